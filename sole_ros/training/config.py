"""Settings of a training or evaluation run; defaults follow SOLE (arXiv 2404.02157 and its reference configuration)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

# the random scale of every training scene in SOLE's (Mask3D's) augmentation
REFERENCE_SCALE_RANGE = (0.9, 1.1)


@dataclass
class DataConfig:
    """Where scenes come from. ``kind``: "synthetic", "scannet" or "scannet200" (processed layout), or
    "mosd" (real Kinect tabletop scans, class-agnostic: objects vs table; for evaluation)."""

    kind: str = "synthetic"
    root: str | None = (
        None  # processed ScanNet folder (<root>/<mode>/*.npy, *_database.yaml) or mOSD folder
    )
    train_mode: str = "train"
    eval_mode: str = "validation"
    features_dir: str | None = None  # per-point CLIP features (<scan>_0.pt)
    mca_dir: str | None = None  # released MCA targets (<scan>.pickle)
    mea_dir: str | None = None  # released MEA targets (<scan>.pickle)
    # synthetic scenes: seeds [first, first + count) for training, the next eval_count for evaluation
    synthetic_first_seed: int = 0
    synthetic_count: int = 64
    synthetic_eval_count: int = 8
    synthetic_kind: str = "mixed"  # "tabletop", "room" or "mixed"
    synthetic_source: str = "surface"  # "surface" or "scan"
    synthetic_max_points: int = 30000
    # rooms' own cap (None: synthetic_max_points): a room scan holds 3-4x a tabletop's voxels, so a
    # run can keep tabletops at full density and still afford rooms
    synthetic_room_max_points: int | None = None
    synthetic_clutter: float = (
        0.0  # 0..1: stacked and touching objects (real tabletops are cluttered)
    )
    # the small objects' size ranges (synthetic.catalogue.OBJECT_SIZES): "compact" (demo.ckpt's) or
    # "household" (real products' spread, 0.1-0.3 m boxes, books and bottles)
    synthetic_object_sizes: str = "compact"
    synthetic_frames: int = (
        12  # RGB-D frames fused per "scan" scene (1: a single view, like a robot's first look)
    )
    oracle_feature_noise: float = 0.3  # stand-in for fused OpenSeg features, see TextOracleFeatures
    oracle_unseen: float = 0.05

    def __post_init__(self):
        from sole_ros.synthetic.catalogue import OBJECT_SIZES

        if self.synthetic_object_sizes not in OBJECT_SIZES:
            raise ValueError(
                f"data.synthetic_object_sizes must be one of {sorted(OBJECT_SIZES)}, "
                f"not {self.synthetic_object_sizes!r}"
            )


@dataclass
class TrainConfig:
    output_dir: str = "runs/sole"
    data: DataConfig = field(default_factory=DataConfig)
    # model: "paper" (the published sizes) or "tiny" (SoleConfig.tiny, for CPUs and tests)
    model_size: str = "paper"
    model_overrides: dict = field(default_factory=dict)  # any SoleConfig field
    clip_model: str = "ViT-L-14"
    clip_pretrained: str | None = (
        "openai"  # open_clip tag, local file, or None (random, saved with the run)
    )
    backbone_checkpoint: str | None = (
        None  # Mask3D/SOLE backbone weights (SOLE trains with it frozen)
    )
    init_checkpoint: str | None = None  # start from these SOLE weights (not a resume)
    # None: frozen when pretrained weights are given (backbone_checkpoint or init_checkpoint, SOLE's
    # setting), trained otherwise: a frozen random backbone gives the decoder nothing to learn from.
    freeze_backbone: bool | None = None
    elastic_distortion: bool = (
        True  # the reference's elastic augmentation (see training/batching.py)
    )
    # probability that a training scene loses all its point CLIP features (MVA is then skipped), so the
    # model also works where no 2D features exist (real scans without images, nodes without a 2D CLIP)
    feature_dropout: float = 0.0
    # probabilities that a training scene's colours are greyed out / overlaid with a random texture
    # (see training/batching.py: synthetic objects have one colour each, real ones are printed)
    color_drop: float = 0.0
    color_texture: float = 0.0
    # each training scene is scaled by a factor drawn uniformly from this range (the reference's: 0.9-1.1)
    scale_range: list = field(default_factory=lambda: list(REFERENCE_SCALE_RANGE))
    # overrides of sole_ros.training.losses.LossWeights. All association weights at 0 give the mask-only,
    # class-agnostic pre-training whose backbone SOLE freezes (see docs/TRAINING.md)
    loss_weights: dict = field(default_factory=dict)
    # optimisation: AdamW + OneCycle, as the reference
    epochs: int = 600
    batch_size: int = 4  # scenes per step per process
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float | None = None
    mixed_precision: bool = True  # fp16 autocast + gradient scaling, only on a GPU
    device: str = "auto"
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs, tests)
    # bookkeeping
    checkpoint_every_steps: int | None = None  # also save mid-epoch (always at the end of an epoch)
    resume: bool = True  # continue from <output_dir>/last.pt when it exists
    progress: bool = True
    cache_scenes: bool = (
        False  # keep loaded scenes in memory (small datasets: synthetic demos, tests)
    )

    def __post_init__(self):
        lo_hi = list(self.scale_range)
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
            raise ValueError(
                f"scale_range must be [low, high] with 0 < low <= high, not {self.scale_range}"
            )

    @property
    def backbone_frozen(self) -> bool:
        """Whether the backbone is frozen in this run (see ``freeze_backbone``)."""
        pretrained = bool(self.backbone_checkpoint or self.init_checkpoint)
        if self.freeze_backbone is None:
            return pretrained
        if self.freeze_backbone and not pretrained:
            raise ValueError(
                "freeze_backbone needs backbone_checkpoint or init_checkpoint: "
                "a frozen, randomly initialised backbone cannot learn"
            )
        return self.freeze_backbone

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        data = DataConfig(**values.pop("data", {}))
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        return cls(data=data, **values)

    @classmethod
    def from_json(cls, path) -> "TrainConfig":
        with open(path) as f:
            return cls.from_dict(json.load(f))
