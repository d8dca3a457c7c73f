"""All sizes of the SOLE network in one place; the defaults are the paper's (arXiv 2404.02157)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

# ScanNet colour statistics used to normalise RGB in [0, 1] (Mask3D / SOLE input convention).
SCANNET_COLOR_MEAN = (0.47793125906962, 0.4303257521323044, 0.3749598901421883)
SCANNET_COLOR_STD = (0.2834475483823543, 0.27566157565723015, 0.27018971370874995)

# The range of each setting, both ends included, checked before a network is built from a
# configuration (``validate``): a checkpoint's file may say anything, and one width of 1e9 would
# allocate terabytes before any weight is compared. Wide around the paper's network (the defaults):
# widths up to 8-16x, so that any network meant to run still fits. Tuples: each entry's range.
BOUNDS: dict[str, tuple[float, float]] = {
    "voxel_size": (0.001, 10.0),  # metres
    "in_channels": (1, 64),
    "clip_dim": (1, 4096),  # CLIP widths are 512..1280
    "planes": (1, 1024),  # 8 entries: the Res16UNet stages
    "layers": (1, 16),  # 8 entries
    "init_dim": (1, 1024),
    "conv1_kernel_size": (1, 9),
    "bn_momentum": (0.0, 1.0),
    "num_queries": (1, 4096),  # as the node's model.num_queries
    "hidden_dim": (2, 2048),
    "num_heads": (1, 64),
    "dim_feedforward": (1, 16384),
    "dropout": (0.0, 1.0),
    "num_decoders": (1, 16),
    "hlevels": (0, 3),  # decoder levels index the 4 coarsest backbone maps
    "gauss_scale": (0.0, 1000.0),
    "sample_sizes": (1, 10_000_000),
    "logit_scale": (0.0, 10_000.0),
    "color_mean": (-10.0, 10.0),
    "color_std": (0.001, 10.0),
    "dbscan_eps": (0.001, 100.0),  # metres
    "top_k": (1, 1_000_000),
    "min_part_fraction": (0.0, 1.0),
    "duplicate_iou": (0.0, 1.0),  # or None
}
_INT_FIELDS = (
    "in_channels",
    "clip_dim",
    "planes",
    "layers",
    "init_dim",
    "conv1_kernel_size",
    "num_queries",
    "hidden_dim",
    "num_heads",
    "dim_feedforward",
    "num_decoders",
    "hlevels",
    "sample_sizes",
    "top_k",
)
_TUPLE_LENGTHS = {
    "planes": (8, 8),
    "layers": (8, 8),
    "hlevels": (1, 4),
    "sample_sizes": (1, 16),
    "color_mean": (3, 3),
    "color_std": (3, 3),
}


# Settings each within its range can still combine into a network of tens of GB (planes 1024 with
# 16 blocks per stage: ~7 G parameters). This bounds a lower estimate of the parameter count
# (``approximate_parameters``: ~20 M for the paper's network, which has 41 M), at 25x the paper's.
MAX_PARAMETERS = 500_000_000


class ConfigError(ValueError):
    """A configuration out of its bounds; ``str(exc)`` names the setting, its value and the bound."""


def bound_problem(name: str, value) -> str | None:
    """Why ``value`` cannot be setting ``name`` (type, length, range; see BOUNDS), or None."""
    if name not in BOUNDS:
        return None
    if name == "duplicate_iou" and value is None:
        return None
    low, high = BOUNDS[name]
    return range_problem(
        name, value, low, high, whole=name in _INT_FIELDS, lengths=_TUPLE_LENGTHS.get(name)
    )


def range_problem(
    name: str,
    value,
    low: float,
    high: float,
    whole: bool = False,
    lengths: tuple[int, int] | None = None,
) -> str | None:
    """Why ``value`` is not a number (``whole``: a whole number) in ``low..high``, or with ``lengths``
    (shortest, longest) a list of such numbers; None when it is. Shared with the backbones' settings."""
    if lengths is not None:
        shortest, longest = lengths
        if not isinstance(value, (tuple, list)) or not shortest <= len(value) <= longest:
            count = str(shortest) if shortest == longest else f"{shortest}..{longest}"
            return f"{name} must be a list of {count} numbers, not {_shown(value)}"
        entries = list(value)
    else:
        entries = [value]
    for entry in entries:
        # numbers.*: numpy's integers and floats count too
        if (
            isinstance(entry, bool)
            or not isinstance(entry, numbers.Real)
            or (whole and not isinstance(entry, numbers.Integral))
        ):
            return (
                f"{name} must be {'a whole number' if whole else 'a number'}, not {_shown(value)}"
            )
        if not (math.isfinite(entry) and low <= entry <= high):
            return f"{name} {_shown(value)} is outside its bound {_number(low)}..{_number(high)}"
    return None


def _number(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _tuples(value):
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _shown(value) -> str:
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class SoleConfig:
    """Architecture and inference settings of SOLE.

    Backbone: ``backbone`` names a registered network (sole_ros/model/backbone_contract.py), which
    reports the widths and strides of its maps to the decoder. The default, Res16UNet34C, takes its
    settings from the flat fields ``planes``/``layers`` per stage, ``init_dim``, the first conv kernel
    and the BN momentum (every stored configuration has them there); its decoder-side maps have
    strides 16/8/4/2/1 and widths ``(planes[3], ..., planes[7])`` = 256/256/128/96/96. Any other
    backbone takes its settings from ``backbone_settings``.
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

    # backbone: a registered name, and the settings of a backbone other than Res16UNet34C
    backbone: str = "res16unet34c"
    backbone_settings: dict = field(default_factory=dict)
    # Res16UNet34C's settings
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

    def __post_init__(self):
        # lists inside the backbone's settings (a checkpoint's plain data) as tuples, like the flat
        # fields, so that a configuration read back from a file equals the one saved
        if isinstance(self.backbone_settings, dict):
            self.backbone_settings = {k: _tuples(v) for k, v in self.backbone_settings.items()}

    def backbone_class(self):
        """The registered class ``backbone`` names (UnknownBackboneError, a ConfigError, if none)."""
        from sole_ros.model.backbone_contract import backbone_class

        return backbone_class(self.backbone)

    @property
    def level_shapes(self):
        """Widths and strides (LevelShape) of the backbone's maps, coarsest first, the last at stride 1."""
        return self.backbone_class().output_shape(self)

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Widths of the backbone's maps, coarsest first (Res16UNet34C: 5, at strides 16/8/4/2/1)."""
        return tuple(level.channels for level in self.level_shapes)

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
        """From a plain dict (checkpoint hyper-parameters store tuples as lists), validated, so that
        a file's configuration is refused (ConfigError) before any network is built from it."""
        if not isinstance(values, dict):
            raise ConfigError(
                f"model configuration: a dict of settings expected, not {type(values).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ConfigError(f"model configuration: unknown settings {', '.join(unknown[:5])}")
        config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        try:
            config.validate()
        except ConfigError as error:
            raise ConfigError(f"model configuration: {error}") from None
        return config

    def approximate_parameters(self) -> int:
        """A lower estimate of the network's parameter count, from the settings alone: the backbone's
        own (Res16UNet34C: the second 3x3x3 convolution of every block), and per decoder level the
        attention (4 h^2 each, cross and self) and feed-forward (2 h f) weights."""
        backbone = self.backbone_class().approximate_parameters(self)
        h = self.hidden_dim
        decoder = len(self.hlevels) * (8 * h * h + 2 * h * self.dim_feedforward)
        return backbone + decoder + self.clip_dim * h

    def replace(self, **changes) -> "SoleConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """ConfigError (a ValueError) for a setting out of BOUNDS or settings that do not fit together."""
        for name in BOUNDS:
            problem = bound_problem(name, getattr(self, name))
            if problem:
                raise ConfigError(problem)
        if not isinstance(self.freeze_backbone, bool):
            raise ConfigError(
                f"freeze_backbone must be true or false, not {self.freeze_backbone!r}"
            )
        if not isinstance(self.backbone, str):
            raise ConfigError(f"backbone must be a name, not {_shown(self.backbone)}")
        if not isinstance(self.backbone_settings, dict) or not all(
            isinstance(k, str) for k in self.backbone_settings
        ):
            raise ConfigError(
                "backbone_settings must be a dict of named settings, "
                f"not {_shown(self.backbone_settings)}"
            )
        backbone = self.backbone_class()
        backbone.check_config(self)  # its own settings, before their parameter count is estimated
        parameters = self.approximate_parameters()
        if parameters > MAX_PARAMETERS:
            size = ", ".join(f"{k} {_plain(v)}" for k, v in backbone.settings(self).items())
            raise ConfigError(
                f"the network these settings describe has over {parameters / 1e6:.0f} M parameters "
                f"(backbone {self.backbone}: {size}; hidden_dim {self.hidden_dim}, "
                f"dim_feedforward {self.dim_feedforward}), more than the {MAX_PARAMETERS / 1e6:.0f} M "
                "allowed"
            )
        levels = backbone.output_shape(self)
        deepest = max(self.hlevels)
        if (
            deepest >= len(levels) - 1
        ):  # the last map (stride 1) gives the mask features, not decoder keys
            raise ConfigError(
                f"hlevels {list(self.hlevels)}: backbone {self.backbone} has {len(levels)} maps, "
                f"so decoder levels index 0..{len(levels) - 2}"
            )
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"hidden_dim {self.hidden_dim} must be divisible by num_heads {self.num_heads}"
            )
        if self.hidden_dim % 2:
            raise ConfigError("hidden_dim must be even (Fourier features are sin/cos pairs)")
        if self.input_mode not in ("averaged", "reference"):
            raise ConfigError(
                f"input_mode must be 'averaged' or 'reference', got {_shown(self.input_mode)}"
            )
