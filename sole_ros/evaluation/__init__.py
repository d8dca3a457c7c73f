"""Evaluation of open-vocabulary 3D instance segmentation: ScanNet-style AP (per class and
class-agnostic, ScanNet200 head/common/tail), tables and plots."""

from sole_ros.evaluation.benchmark_classes import (
    LABEL_SETS,
    SCANNET20_INSTANCE,
    SCANNET200_COMMON,
    SCANNET200_HEAD,
    SCANNET200_INSTANCE,
    SCANNET200_TAIL,
    LabelSet,
)
from sole_ros.evaluation.coverage import best_iou_per_object, coverage
from sole_ros.evaluation.instance_ap import (
    ALL_THRESHOLDS,
    AP_THRESHOLDS,
    MATCHING_RULES,
    MIN_REGION_SIZE,
    InstanceAPResult,
    SceneGroundTruth,
    ScenePrediction,
    average_precision,
    evaluate_instances,
)
from sole_ros.evaluation.query_accuracy import QueryTop1, classes_present, top1_hit
from sole_ros.evaluation.report import format_table, plot_per_class, write_csv, write_json

__all__ = [
    "ALL_THRESHOLDS",
    "AP_THRESHOLDS",
    "InstanceAPResult",
    "LABEL_SETS",
    "LabelSet",
    "MATCHING_RULES",
    "MIN_REGION_SIZE",
    "SCANNET200_COMMON",
    "SCANNET200_HEAD",
    "SCANNET200_INSTANCE",
    "SCANNET200_TAIL",
    "SCANNET20_INSTANCE",
    "QueryTop1",
    "SceneGroundTruth",
    "ScenePrediction",
    "average_precision",
    "best_iou_per_object",
    "classes_present",
    "coverage",
    "evaluate_instances",
    "format_table",
    "top1_hit",
    "plot_per_class",
    "write_csv",
    "write_json",
]
