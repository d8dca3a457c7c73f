"""All sizes of the SOLE network in one place; the defaults are the paper's (SOLE_REFERENCE.md)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# ScanNet colour statistics used to normalise RGB in [0, 1] (Mask3D / SOLE input convention).
SCANNET_COLOR_MEAN = (0.47793125906962, 0.4303257521323044, 0.3749598901421883)
SCANNET_COLOR_STD = (0.2834475483823543, 0.27566157565723015, 0.27018971370874995)


@dataclass
class SoleConfig:
    """Architecture and inference settings of SOLE.

    Backbone (Res16UNet34C): ``planes``/``layers`` per stage, first conv kernel, BN momentum.
    The decoder-side feature maps have strides 16/8/4/2/1 and widths
    ``(planes[3], planes[4], planes[5], planes[6], planes[7])`` = 256/256/128/96/96.
    """

    # input
    voxel_size: float = 0.02
    in_channels: int = 3  # RGB
    color_mean: tuple[float, float, float] = SCANNET_COLOR_MEAN
    color_std: tuple[float, float, float] = SCANNET_COLOR_STD
    clip_dim: int = 768  # width of point-wise CLIP features and CLIP text embeddings
    # "averaged": mean features per voxel, lexicographic voxel order, plain greedy query seeds
    # (sole_ros's training); "reference": the published SOLE's conventions, first point per voxel
    # in arrival order and the seeds of its CUDA sampler (model/voxel.py, model/fps.py)
    input_mode: str = "averaged"

    # backbone: Res16UNet34C
    planes: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    layers: tuple[int, ...] = (2, 3, 4, 6, 2, 2, 2, 2)
    init_dim: int = 32
    conv1_kernel_size: int = 5
    bn_momentum: float = 0.02

    # queries and decoder (Cross-Modality Decoder)
    num_queries: int = 150
    hidden_dim: int = 128
    num_heads: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.0
    num_decoders: int = 3  # passes over the levels, sharing the weights of one set of layers
    hlevels: tuple[int, ...] = (0, 1, 2, 3)  # decoder levels = backbone maps at strides 16/8/4/2
    gauss_scale: float = 1.0  # scale of the random Fourier matrix at initialisation
    # voxels sampled per level as keys in training (inference uses all voxels)
    sample_sizes: tuple[int, ...] = (200, 800, 3200, 12800, 51200)
    logit_scale: float = 100.0  # CLIP-style temperature of semantic logits

    # inference
    dbscan_eps: float = 0.95  # metres; masks are split into parts connected within this distance
    top_k: int = 750
    # not in SOLE (0 / None there): drop parts smaller than this fraction of their query's largest,
    # and answers overlapping a better one for the same phrase at this IoU (see inference/segmenter.py)
    min_part_fraction: float = 0.0
    duplicate_iou: float | None = None
    freeze_backbone: bool = True

    @property
    def level_channels(self) -> tuple[int, int, int, int, int]:
        """Widths of the 5 decoder-side backbone maps, coarsest (stride 16) first."""
        p = self.planes
        return (p[3], p[4], p[5], p[6], p[7])

    @property
    def num_levels(self) -> int:
        return len(self.hlevels)

    @classmethod
    def tiny(cls, **overrides) -> "SoleConfig":
        """A small network with the same structure for fast CPU tests (clip_dim 64 = sole-tiny CLIP)."""
        base = dict(
            clip_dim=64,
            planes=(8, 16, 16, 16, 16, 16, 8, 8),
            layers=(1, 1, 1, 1, 1, 1, 1, 1),
            init_dim=8,
            conv1_kernel_size=3,
            num_queries=12,
            hidden_dim=32,
            num_heads=4,
            dim_feedforward=64,
            sample_sizes=(50, 100, 200, 400, 800),
            top_k=50,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_dict(cls, values: dict) -> "SoleConfig":
        """From a plain dict (checkpoint hyper-parameters store tuples as lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def replace(self, **changes) -> "SoleConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        if len(self.planes) != 8 or len(self.layers) != 8:
            raise ValueError("planes and layers need 8 entries (Res16UNet stages)")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be divisible by num_heads {self.num_heads}")
        if self.hidden_dim % 2:
            raise ValueError("hidden_dim must be even (Fourier features are sin/cos pairs)")
        if any(not 0 <= h <= 3 for h in self.hlevels):
            raise ValueError("hlevels index the 4 coarsest backbone maps (0..3)")
        if self.voxel_size <= 0:
            raise ValueError("voxel_size must be positive")
        if self.input_mode not in ("averaged", "reference"):
            raise ValueError(f"input_mode must be 'averaged' or 'reference', got {self.input_mode!r}")
