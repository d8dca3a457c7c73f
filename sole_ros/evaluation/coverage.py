"""Mask coverage: how many ground-truth objects some predicted mask covers, whatever its score.

AP ranks the masks by score; coverage ignores the ranking. An object no mask covers at IoU 0.5 is
missed at every rank, so coverage bounds AP50 from above and tells a model's missing masks apart
from its badly ranked ones.
"""

from __future__ import annotations

import numpy as np

from sole_ros.evaluation.instance_ap import (
    MIN_REGION_SIZE,
    SceneGroundTruth,
    ScenePrediction,
    _intersections,
)


def best_iou_per_object(
    gt: SceneGroundTruth,
    prediction: ScenePrediction,
    class_ids,
    min_region_size: int = MIN_REGION_SIZE,
) -> np.ndarray:
    """For each ground-truth instance of ``class_ids`` with at least ``min_region_size`` points,
    the highest IoU any predicted mask reaches with it (0 without predictions), in instance-id order."""
    masks = prediction.masks
    keep = np.isin(gt.labels, np.asarray(list(class_ids))) & (gt.instances > 0)
    ids = np.unique(gt.instances[keep])
    on_object = np.isin(gt.instances, ids)  # every point of those instances, as AP counts them
    gt_index = np.full(len(gt.instances), -1)
    gt_index[on_object] = np.searchsorted(ids, gt.instances[on_object])
    counts = np.bincount(gt_index[on_object], minlength=len(ids))
    if masks.shape[1] == 0:
        best = np.zeros(len(ids))
    else:
        inter = _intersections(gt_index, len(ids), masks)
        best = (inter / (counts[:, None] + masks.sum(axis=0)[None, :] - inter)).max(axis=1)
    return best[counts >= min_region_size].astype(np.float64)


def coverage(
    pairs, class_ids, iou_threshold: float = 0.5, min_region_size: int = MIN_REGION_SIZE
) -> float:
    """Share of the ground-truth objects of (SceneGroundTruth, ScenePrediction) pairs that some
    prediction covers at ``iou_threshold`` or more; NaN without objects."""
    best = [
        best_iou_per_object(gt, prediction, class_ids, min_region_size) for gt, prediction in pairs
    ]
    best = np.concatenate(best) if best else np.zeros(0)
    return float((best >= iou_threshold).mean()) if best.size else float("nan")
