"""ScanNet-style average precision for 3D instance segmentation.

The rules, as the ScanNet benchmark defines them:
  * IoU thresholds 0.50, 0.55, ..., 0.90 (nine; "AP" is the mean over them, conventionally
    written 0.5:0.95), plus 0.50 ("AP50") and 0.25 ("AP25"). A match needs IoU strictly above.
  * Ground-truth instances and predictions with fewer than ``min_region_size`` points (100) are
    left out; predicted masks are binary over the scene's points.
  * Per class and threshold, ground-truth instances are visited in turn (ascending instance id),
    and each takes the highest-scoring prediction of its class above the threshold that no earlier
    instance took (a true positive); the other predictions above the threshold on it are false
    positives (duplicates). How a duplicate is consumed is the ``matching`` rule:
      - "scannet" (the default; what the benchmark's evaluate_semantic_instance.py does): only the
        true positive is taken; a duplicate stays free, so the same prediction can be a false
        positive on one instance and the true positive of the next. The script walks each
        instance's predictions in the order of the prediction file and takes the first above the
        threshold; here they are walked best score first (ties: the order given), the order in
        which SOLE and Mask3D write their predictions, so the first is also the best.
      - "exclusive": every prediction above the threshold on an instance is consumed, true positive
        and duplicates alike, so each prediction counts once per threshold.
    The two differ only where one prediction overlaps two instances of its class above the
    threshold, which IoU above 0.5 rules out: AP and AP50 are the same under both, AP25 is not.
  * A prediction matching nothing is a false positive unless more than ``threshold`` of its points
    lie on ignored ground truth: points of classes not evaluated (wall, floor, unlabelled) and
    too-small instances of its own class.
  * AP integrates the precision-recall curve taken at every distinct score (plus the point
    recall 0, precision 1) with the benchmark's rule: each point's precision is weighted by half
    the recall span between its two neighbours. A class with ground truth and no prediction scores 0;
    one without ground truth anywhere is NaN and left out of means.

Class-agnostic AP runs the same with every evaluated class merged into one and each distinct
predicted mask counted once, at its best score (the same mask proposed under several class
names is one proposal there). A model's own class-agnostic segmentation (masks scored without
any class, as Mask3D's proposals are) can be given instead; its labels are then ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from sole_ros.evaluation.query_accuracy import QueryTop1

AP_THRESHOLDS = np.round(np.arange(0.5, 0.95, 0.05), 2)  # 0.50 ... 0.90
ALL_THRESHOLDS = np.append(AP_THRESHOLDS, 0.25)
MIN_REGION_SIZE = 100
# How predictions above the threshold are consumed by the ground truth they match (module docstring).
MATCHING_RULES = ("scannet", "exclusive")


@dataclass
class ScenePrediction:
    """Predicted instances of one scene: binary masks [N_points, P], label ids [P], scores [P]."""

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        self.masks = np.asarray(self.masks).astype(bool)
        if self.masks.ndim != 2:
            raise ValueError("masks must be [N_points, P]")
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (self.masks.shape[1] == len(self.labels) == len(self.scores)):
            raise ValueError(
                f"{self.masks.shape[1]} masks, {len(self.labels)} labels, {len(self.scores)} scores"
            )

    def distinct_masks(self, class_ids) -> "ScenePrediction":
        """Each distinct mask labelled with one of ``class_ids`` once, with its best-scoring label:
        what class-agnostic AP ranks. An open-vocabulary model proposes the same mask under several
        class names; without labels those are one proposal, not duplicates."""
        keep = np.isin(self.labels, class_ids)
        masks, labels, scores = self.masks[:, keep], self.labels[keep], self.scores[keep]
        if masks.shape[1] == 0:
            return ScenePrediction(masks, labels, scores)
        _, group = np.unique(np.packbits(masks, axis=0).T, axis=0, return_inverse=True)
        group = group.reshape(-1)
        order = np.lexsort((-scores, group))  # by group, best score first
        first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
        return ScenePrediction(masks[:, first], labels[first], scores[first])


@dataclass
class SceneGroundTruth:
    """Per-point ground truth of one scene: label id [N] and instance id [N] (<= 0: no instance)."""

    labels: np.ndarray
    instances: np.ndarray

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.instances = np.asarray(self.instances, dtype=np.int64).reshape(-1)
        if len(self.labels) != len(self.instances):
            raise ValueError("labels and instances must have one entry per point")


@dataclass
class _Detections:
    """Per class and threshold: scores of detections with their TP/FP flag, and missed GT counts."""

    scores: list = field(default_factory=list)
    is_tp: list = field(default_factory=list)
    missed: int = 0
    has_gt: bool = False
    has_pred: bool = False


def average_precision(scores: np.ndarray, is_tp: np.ndarray, missed: int) -> float:
    """AP of scored detections (``is_tp`` True/False) given ``missed`` unmatched ground truths,
    integrated the ScanNet way (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    is_tp = np.asarray(is_tp, dtype=bool)
    total_tp = int(is_tp.sum())
    if total_tp + missed == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    thresholds = np.unique(scores)  # ascending
    order = np.argsort(-scores, kind="stable")
    s_sorted, tp_sorted = scores[order], is_tp[order]
    # Detections with score >= t, for each distinct t: a searchsorted on the descending scores.
    counts = np.searchsorted(-s_sorted, -thresholds, side="right")
    tp_cum = np.concatenate([[0], np.cumsum(tp_sorted)])
    tp = tp_cum[counts]
    fp = counts - tp
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / (total_tp + missed)
    # Points from the lowest threshold (largest recall) up, then the artificial (recall 0, precision 1).
    precision = np.append(precision, 1.0)
    recall = np.append(recall, 0.0)
    padded = np.concatenate([[recall[0]], recall, [0.0]])
    widths = (padded[:-2] - padded[2:]) / 2
    return float(np.dot(precision, widths))


def _intersections(gt_index: np.ndarray, n_gt: int, masks: np.ndarray) -> np.ndarray:
    """[G, P] point counts shared by GT instance g (points with gt_index == g) and mask p."""
    valid = gt_index >= 0
    rows = np.nonzero(valid)[0]
    onehot = sp.csr_matrix(
        (np.ones(len(rows)), (gt_index[valid], rows)), shape=(n_gt, len(gt_index))
    )
    return np.asarray(onehot @ masks.astype(np.float32)).astype(np.int64)


def _match_scene(
    gt: SceneGroundTruth,
    pred: ScenePrediction,
    class_ids: np.ndarray,
    agnostic: bool,
    min_region_size: int,
    thresholds: np.ndarray,
    out: dict[int, list[_Detections]],
    matching: str = "scannet",
) -> None:
    if len(gt.labels) != pred.masks.shape[0]:
        raise ValueError(
            f"ground truth has {len(gt.labels)} points, predictions {pred.masks.shape[0]}"
        )
    evaluated = np.isin(gt.labels, class_ids)
    void = ~evaluated  # points of classes not scored: ignored by false-positive accounting
    # GT instances: (instance id, label) pairs on evaluated points with an instance.
    has_instance = evaluated & (gt.instances > 0)
    keys = np.stack([gt.instances[has_instance], gt.labels[has_instance]], axis=1)
    uniq, inverse, sizes = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    gt_index = np.full(len(gt.labels), -1)
    gt_index[has_instance] = inverse.reshape(-1)
    gt_labels = uniq[:, 1] if len(uniq) else np.zeros(0, np.int64)
    # An instance with no id (labelled but instance <= 0) is treated like void, as ScanNet does.
    void |= evaluated & (gt.instances <= 0)

    pred_sizes = pred.masks.sum(axis=0)
    keep = (pred_sizes >= min_region_size) & np.isin(pred.labels, class_ids)
    masks, labels, scores, pred_sizes = (
        pred.masks[:, keep],
        pred.labels[keep],
        pred.scores[keep],
        pred_sizes[keep],
    )
    inter = _intersections(gt_index, len(uniq), masks)
    iou = inter / np.maximum(sizes[:, None] + pred_sizes[None, :] - inter, 1)
    void_inter = void.astype(np.float32) @ masks.astype(np.float32)
    if agnostic:
        gt_labels = np.zeros_like(gt_labels)
        labels = np.zeros_like(labels)
    for c in np.unique(np.concatenate([gt_labels, labels])):
        g_sel = np.nonzero(gt_labels == c)[0]
        p_sel = np.nonzero(labels == c)[0]
        valid_g = g_sel[sizes[g_sel] >= min_region_size]
        small_g = g_sel[sizes[g_sel] < min_region_size]
        ignored = void_inter[p_sel] + inter[np.ix_(small_g, p_sel)].sum(axis=0)
        ignored_share = ignored / np.maximum(pred_sizes[p_sel], 1)
        p_order = p_sel[np.argsort(-scores[p_sel], kind="stable")]
        for t_i, threshold in enumerate(thresholds):
            det = out[int(c)][t_i]
            det.has_gt |= len(valid_g) > 0
            det.has_pred |= len(p_sel) > 0
            used = np.zeros(len(scores), dtype=bool)
            for g in valid_g:
                candidates = p_order[(iou[g, p_order] > threshold) & ~used[p_order]]
                if len(candidates) == 0:
                    det.missed += 1
                    continue
                if matching == "exclusive":
                    used[candidates] = True
                else:  # "scannet": the duplicates stay free for the instances after this one
                    used[candidates[0]] = True
                det.scores.extend(scores[candidates])
                det.is_tp.extend([True] + [False] * (len(candidates) - 1))  # the best scores first
            # Predictions that matched nothing: false positives unless mostly on ignored points.
            for local, p in enumerate(p_sel):
                if used[p] or (len(valid_g) and (iou[valid_g, p] > threshold).any()):
                    continue
                if ignored_share[local] <= threshold:
                    det.scores.append(scores[p])
                    det.is_tp.append(False)


@dataclass
class InstanceAPResult:
    """AP per class and threshold (NaN: no ground truth), class-agnostic AP, and the class names."""

    class_ids: np.ndarray
    class_names: tuple[str, ...]
    thresholds: np.ndarray
    ap: np.ndarray  # [C, T]
    agnostic_ap: np.ndarray  # [T]
    gt_counts: np.ndarray  # [C] ground-truth instances (of valid size) per class
    splits: tuple[tuple[str, frozenset], ...] = ()
    query_top1: "QueryTop1 | None" = None  # top-1 accuracy of class-name queries, when measured
    query_top1_contrast: "QueryTop1 | None" = (
        None  # the same with the other class names as contrast
    )
    matching: str = "scannet"  # how duplicates were consumed (MATCHING_RULES)

    def _column(self, threshold: float) -> int:
        return int(np.nonzero(np.isclose(self.thresholds, threshold))[0][0])

    def _ap_columns(self) -> np.ndarray:
        return np.nonzero(np.isin(np.round(self.thresholds, 2), AP_THRESHOLDS))[0]

    def per_class(self) -> dict[str, dict[str, float]]:
        ap = np.array([self._mean(row) for row in self.ap[:, self._ap_columns()]])
        return {
            name: {
                "ap": float(ap[i]),
                "ap50": float(self.ap[i, self._column(0.5)]),
                "ap25": float(self.ap[i, self._column(0.25)]),
                "gt_instances": int(self.gt_counts[i]),
            }
            for i, name in enumerate(self.class_names)
        }

    @staticmethod
    def _mean(values) -> float:
        values = np.asarray(list(values), dtype=np.float64)
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else float("nan")

    def summary(self) -> dict[str, float]:
        rows = self.per_class()
        out = {key: self._mean(r[key] for r in rows.values()) for key in ("ap", "ap50", "ap25")}
        agn = self.agnostic_ap
        out.update(
            {
                "agnostic_ap": self._mean(agn[self._ap_columns()]),
                "agnostic_ap50": float(agn[self._column(0.5)]),
                "agnostic_ap25": float(agn[self._column(0.25)]),
            }
        )
        for split_name, members in self.splits:
            for key in ("ap", "ap50", "ap25"):
                out[f"{split_name}_{key}"] = self._mean(
                    r[key] for n, r in rows.items() if n in members
                )
        if self.query_top1 is not None:
            out["query_top1"] = self.query_top1.accuracy
        if self.query_top1_contrast is not None:
            out["query_top1_contrast"] = self.query_top1_contrast.accuracy
        return out


def evaluate_instances(
    scenes: list[tuple[SceneGroundTruth, ScenePrediction]],
    class_ids,
    class_names=None,
    splits=(),
    min_region_size: int = MIN_REGION_SIZE,
    thresholds: np.ndarray = ALL_THRESHOLDS,
    agnostic_predictions: list[ScenePrediction] | None = None,
    matching: str = "scannet",
) -> InstanceAPResult:
    """AP over a set of scenes for the classes ``class_ids`` (the label ids used in both the
    ground truth and the predictions). Class-agnostic AP ranks ``agnostic_predictions`` (one per
    scene, labels ignored) when given, else the distinct masks of the per-class predictions.
    ``matching``: "scannet" (the benchmark script's loop) or "exclusive" (each prediction consumed
    once); see the module docstring."""
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {', '.join(MATCHING_RULES)}, got {matching!r}")
    class_ids = np.asarray(class_ids, dtype=np.int64)
    class_names = (
        tuple(class_names) if class_names is not None else tuple(str(c) for c in class_ids)
    )
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if 0.5 not in np.round(thresholds, 2) or 0.25 not in np.round(thresholds, 2):
        raise ValueError("thresholds must include 0.5 and 0.25")
    per_class = {int(c): [_Detections() for _ in thresholds] for c in class_ids}
    agnostic = {0: [_Detections() for _ in thresholds]}
    gt_counts = np.zeros(len(class_ids), dtype=np.int64)
    index_of = {int(c): i for i, c in enumerate(class_ids)}
    if agnostic_predictions is not None and len(agnostic_predictions) != len(scenes):
        raise ValueError(
            f"{len(agnostic_predictions)} class-agnostic predictions for {len(scenes)} scenes"
        )
    for index, (gt, pred) in enumerate(scenes):
        _match_scene(gt, pred, class_ids, False, min_region_size, thresholds, per_class, matching)
        if agnostic_predictions is None:
            proposals = pred.distinct_masks(class_ids)
        else:
            unlabelled = agnostic_predictions[index]
            proposals = ScenePrediction(
                unlabelled.masks, np.full(len(unlabelled.scores), class_ids[0]), unlabelled.scores
            )
        _match_scene(
            gt, proposals, class_ids, True, min_region_size, thresholds, agnostic, matching
        )
        has = np.isin(gt.labels, class_ids) & (gt.instances > 0)
        pairs, sizes = np.unique(
            np.stack([gt.instances[has], gt.labels[has]], 1), axis=0, return_counts=True
        )
        for label in pairs[sizes >= min_region_size, 1]:
            gt_counts[index_of[int(label)]] += 1

    def score(dets: _Detections) -> float:
        if not dets.has_gt:
            return float("nan")
        if not dets.has_pred:
            return 0.0
        return average_precision(
            np.array(dets.scores), np.array(dets.is_tp, dtype=bool), dets.missed
        )

    ap = np.array([[score(d) for d in per_class[int(c)]] for c in class_ids]).reshape(
        len(class_ids), len(thresholds)
    )
    agnostic_ap = np.array([score(d) for d in agnostic[0]])
    return InstanceAPResult(
        class_ids,
        class_names,
        thresholds,
        ap,
        agnostic_ap,
        gt_counts,
        tuple(splits),
        matching=matching,
    )
