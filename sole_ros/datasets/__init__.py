"""Data for training and evaluation: the processed ScanNet/ScanNet200 layout of Mask3D/SOLE,
per-point CLIP features (OpenScene layout), SOLE's released MCA/MEA targets, synthetic scenes, and
real Kinect tabletop scans (mOSD) for class-agnostic evaluation."""

from sole_ros.datasets.mosd import MosdScans
from sole_ros.datasets.point_features import (
    PointFeatureFolder,
    load_point_features,
    save_openscene_features,
)
from sole_ros.datasets.released_targets import (
    ReleasedTargets,
    UnsafePickleError,
    load_mca,
    load_mea,
)
from sole_ros.datasets.scannet_processed import ProcessedScanNet, scan_name, write_processed_scene
from sole_ros.datasets.scene_sample import SceneSample, instance_order
from sole_ros.datasets.synthetic_dataset import SyntheticScenes, TextOracleFeatures

__all__ = [
    "MosdScans",
    "PointFeatureFolder",
    "ProcessedScanNet",
    "ReleasedTargets",
    "SceneSample",
    "SyntheticScenes",
    "TextOracleFeatures",
    "UnsafePickleError",
    "instance_order",
    "load_mca",
    "load_mea",
    "load_point_features",
    "save_openscene_features",
    "scan_name",
    "write_processed_scene",
]
