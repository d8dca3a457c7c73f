"""Evaluating a trained checkpoint: ``evaluate_checkpoint(...)`` from Python, ``sole-ros eval``
from the command line.

Each evaluation scene goes through the same inference as the ROS node (OpenVocabSegmenter:
both branches' soft geometric mean, connected parts, top-k, score = p x mean mask probability)
with the benchmark's class names as the phrases; the predicted point masks are then scored with
ScanNet-style AP (sole_ros.evaluation). Class-agnostic AP scores the model's class-agnostic
segmentation (the node's full segmentation: every mask part, scored by its mean mask
probability), as class-agnostic proposals are scored in Mask3D and OpenMask3D. Each class
present in a scene is also asked on its own, as a robot asks the query service, and the best
answer is scored: the query top-1 accuracy, once asked alone (SOLE's binary query) and once with
the benchmark's other class names as contrast phrases (``query.contrast_phrases``).
Writes a per-class table, CSV, JSON and a PNG plot.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from sole_ros.evaluation import (
    SCANNET20_INSTANCE,
    SCANNET200_INSTANCE,
    InstanceAPResult,
    QueryTop1,
    SceneGroundTruth,
    ScenePrediction,
    classes_present,
    evaluate_instances,
    format_table,
    plot_per_class,
    top1_hit,
    write_csv,
    write_json,
)
from sole_ros.model.config import SoleConfig
from sole_ros.training.checkpointing import load_checkpoint
from sole_ros.training.components import CLASS_PROMPT, build_dataset, text_encoders
from sole_ros.training.config import TrainConfig


def vocabulary(config: TrainConfig, dataset) -> tuple[list[int], list[str], tuple]:
    """(label ids, class names, splits) scored for this data kind."""
    if config.data.kind in ("synthetic", "mosd"):
        ids = [
            i
            for i in sorted(dataset.class_names)
            if i not in getattr(dataset, "ignored_labels", ())
        ]
        if config.data.kind == "mosd":
            from sole_ros.datasets.mosd import OBJECT

            ids = [OBJECT]  # objects only: the table is not an instance
        return ids, [dataset.class_names[i] for i in ids], ()
    label_set = SCANNET200_INSTANCE if config.data.kind == "scannet200" else SCANNET20_INSTANCE
    return list(label_set.ids), list(label_set.names), label_set.splits


def predict_scene(
    segmenter, sample, class_ids: list[int], class_names: list[str], top_k: int | None = None
) -> ScenePrediction:
    segmenter.set_scene(sample.points, sample.colors, sample.clip_features, version=sample.name)
    instances = segmenter.query(class_names, top_k=top_k)
    label_of = dict(zip(class_names, class_ids))
    return _as_prediction(instances, len(sample), [label_of[i.label] for i in instances])


def predict_agnostic(segmenter, sample) -> ScenePrediction:
    """The class-agnostic segmentation of a scene already set (labels all 0)."""
    instances = segmenter.segment_all()
    return _as_prediction(instances, len(sample), np.zeros(len(instances), dtype=np.int64))


def _as_prediction(instances, num_points: int, labels) -> ScenePrediction:
    masks = np.zeros((num_points, len(instances)), dtype=bool)
    for j, instance in enumerate(instances):
        masks[instance.point_indices, j] = True
    return ScenePrediction(masks, labels, [i.score for i in instances])


def score_top1_queries(
    segmenter,
    sample,
    class_ids: list[int],
    class_names: list[str],
    min_region_size: int,
    tally: QueryTop1,
    contrast_phrases: list[str] = (),
) -> None:
    """Ask each class present in the scene on its own (as the query service does) and score the
    best answer (see sole_ros.evaluation.query_accuracy). The scene must be set already."""
    gt = SceneGroundTruth(sample.semantic, sample.instance)
    name_of = dict(zip(class_ids, class_names))
    for class_id in classes_present(gt, class_ids, min_region_size):
        answers = segmenter.query([name_of[class_id]], contrast_phrases=list(contrast_phrases))
        answer = None
        if answers:
            answer = np.zeros(len(sample), dtype=bool)
            answer[answers[0].point_indices] = True
        tally.add(name_of[class_id], top1_hit(gt, class_id, answer, tally.iou_threshold))


def evaluate_checkpoint(
    checkpoint,
    config: TrainConfig | None = None,
    output_dir=None,
    device: str = "auto",
    max_scenes: int | None = None,
    top_k: int | None = None,
    min_region_size: int | None = None,
    query_top1: bool = True,
    views: int = 1,
    scene_scale: float = 1.0,
    view_scale_jitter: float = 0.1,
    point_features: bool = True,
    num_queries: int = 0,
    matching: str = "scannet",
) -> InstanceAPResult:
    """AP of ``checkpoint`` on the evaluation split of ``config`` (default: the run's own config),
    and with ``query_top1`` the top-1 accuracy of class-name queries asked alone
    (``result.query_top1``) and among the other class names (``result.query_top1_contrast``).

    ``min_region_size`` defaults to ScanNet's 100 points for ScanNet data and to 30 for the
    (sparser) synthetic and mOSD scenes. ``views``, ``scene_scale`` and ``view_scale_jitter`` are
    the node's test-time augmentation (sole_ros.inference.multi_view); 1, 1.0: none.
    ``point_features=False`` scores the synthetic scenes without their stand-in point CLIP
    features, as a node without a 2D CLIP (the demo weights' random one) sees its map.
    ``num_queries`` > 0 samples that many query seeds per pass instead of the trained count (the
    node's ``model.num_queries``). ``matching`` is the AP's rule for duplicates (AP25 depends on
    it): "scannet", the benchmark script's, or "exclusive" (sole_ros.evaluation.instance_ap).
    """
    from sole_ros.device import resolve_device
    from sole_ros.pipeline import PipelineSettings, load_segmenter

    device = resolve_device(device)
    hp = load_checkpoint(checkpoint).get("hyper_parameters", {})
    if config is None:
        if "train_config" not in hp:
            raise ValueError(f"{checkpoint} has no training settings: pass a TrainConfig")
        config = TrainConfig.from_dict(hp["train_config"])
    # The model and its CLIP load exactly as the ROS node loads them.
    settings = PipelineSettings(
        checkpoint=str(checkpoint),
        device=str(device),
        prompt=CLASS_PROMPT,
        top_k=SoleConfig.from_dict(hp["sole_config"]).top_k,
        dense_features=False,
        test_time_views=views,
        scene_scale=scene_scale,
        view_scale_jitter=view_scale_jitter,
        num_queries=num_queries,
    )
    segmenter, clip = load_segmenter(settings, device, log=lambda *_: None)
    _, class_encoder = text_encoders(clip, device)
    dataset = build_dataset(config, "eval", class_encoder if point_features else None)
    class_ids, class_names, splits = vocabulary(config, dataset)
    if min_region_size is None:
        min_region_size = 100 if config.data.kind in ("scannet", "scannet200") else 30
    count = len(dataset) if max_scenes is None else min(max_scenes, len(dataset))
    pairs, agnostic, alone, contrasted = _predict_scenes(
        segmenter, dataset, count, class_ids, class_names, top_k, min_region_size, query_top1
    )
    result = evaluate_instances(
        pairs,
        class_ids,
        class_names,
        splits=splits,
        min_region_size=min_region_size,
        agnostic_predictions=agnostic,
        matching=matching,
    )
    result.query_top1, result.query_top1_contrast = alone, contrasted
    if output_dir is not None:
        _write_report(
            result,
            pathlib.Path(output_dir),
            f"{config.data.kind} ({count} scenes)",
            {
                "checkpoint": str(checkpoint),
                "scenes": count,
                "min_region_size": min_region_size,
                "top_k": top_k if top_k is not None else segmenter.top_k,
                "device": str(device),
                "views": views,
                "scene_scale": scene_scale,
                "view_scale_jitter": view_scale_jitter,
                "point_features": point_features,
                "num_queries": segmenter.model.config.num_queries,
                "matching": matching,
            },
        )
    return result


def _predict_scenes(
    segmenter,
    dataset,
    count: int,
    class_ids: list[int],
    class_names: list[str],
    top_k: int | None,
    min_region_size: int,
    query_top1: bool,
):
    """The first ``count`` scenes predicted: (ground truth, prediction) pairs, class-agnostic
    predictions, and the query top-1 tallies asked alone and with contrast (None without)."""
    pairs, agnostic = [], []
    alone, contrasted = (QueryTop1(), QueryTop1()) if query_top1 else (None, None)
    for index in range(count):
        sample = dataset[index]
        prediction = predict_scene(segmenter, sample, class_ids, class_names, top_k)
        pairs.append((SceneGroundTruth(sample.semantic, sample.instance), prediction))
        agnostic.append(predict_agnostic(segmenter, sample))
        if query_top1:
            score_top1_queries(segmenter, sample, class_ids, class_names, min_region_size, alone)
            score_top1_queries(
                segmenter,
                sample,
                class_ids,
                class_names,
                min_region_size,
                contrasted,
                contrast_phrases=class_names,
            )
    return pairs, agnostic, alone, contrasted


def _write_report(result: InstanceAPResult, out: pathlib.Path, title: str, settings: dict) -> None:
    """The table, CSV, JSON and plot of an evaluation, and the settings it ran with."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "ap_table.txt").write_text(format_table(result) + "\n")
    write_csv(result, out / "ap_per_class.csv")
    write_json(result, out / "ap.json")
    plot_per_class(result, out / "ap_per_class.png", title=title)
    (out / "eval_settings.json").write_text(json.dumps(settings, indent=2))
