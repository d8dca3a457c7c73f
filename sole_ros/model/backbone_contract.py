"""What SOLE asks of a sparse 3D backbone, and the registry that names backbones for the config.

A backbone is a MinkowskiEngine network, a subclass of ``Backbone`` registered under a name with
``@register_backbone("name")``; ``SoleConfig.backbone`` names it and ``SoleModel`` builds it as its
``backbone`` attribute, so its parameters are the state-dict keys ``backbone.*`` (``model.backbone.*``
in a Lightning checkpoint). It takes one batched SparseTensor of the voxels (features: the
``input_channels`` it reports) and returns one SparseTensor per level of ``output_shape``:

* coarsest first, the strides powers of two, the last at stride 1 on the input's own coordinates
  (same coordinate map, rows in input order: its features become the per-voxel mask features);
* a map at stride s holds coordinates that are multiples of s covering every input voxel (what a
  MinkowskiEngine convolution of stride s gives), so the decoder can pool CLIP features and
  positions from the input voxels to it;
* the decoder's levels (``SoleConfig.hlevels``) index the maps before the last.

The class-level methods answer from the configuration alone, before anything is built: the
config's validation asks for a parameter estimate and a check of the settings, the decoder for the
widths and strides, the checkpoint loader whether a file's backbone tensors are this backbone's and
which settings they imply.
"""

from __future__ import annotations

import abc
import importlib
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from sole_ros.model.config import ConfigError, SoleConfig, range_problem

# SoleModel's attribute for its backbone: the prefix of the backbone's keys in the model's state dict.
STATE_DICT_PREFIX = "backbone."


@dataclass(frozen=True)
class LevelShape:
    """One map a backbone returns: its feature width and its stride in voxels."""

    channels: int
    stride: int


@dataclass(frozen=True)
class Setting:
    """One entry of a backbone's ``backbone_settings``: its default and inclusive range; ``lengths``
    (shortest, longest) for a list of numbers. Whole numbers when the default's numbers are ints."""

    default: Any
    low: float
    high: float
    lengths: tuple[int, int] | None = None

    @property
    def whole(self) -> bool:
        values = self.default if isinstance(self.default, (tuple, list)) else (self.default,)
        return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


class UnknownBackboneError(ConfigError):
    """A configuration names a backbone nobody registered; the message lists those that are."""


class Backbone(nn.Module, metaclass=abc.ABCMeta):
    """Base of every backbone. ``__init__(config)`` builds it; ``forward(x)`` returns its maps.

    Define ``output_shape``, ``approximate_parameters`` and ``forward``; declare ``settings_spec`` for the
    settings it reads from ``config.backbone_settings`` (or override ``settings``/``check_config``),
    and ``recognises``/``config_from_state_dict``/``ignored_keys`` where files in a published layout
    exist for it.
    """

    name: ClassVar[str] = ""  # set by register_backbone
    settings_spec: ClassVar[dict[str, Setting]] = {}
    # prefixes of this backbone's keys in stored files that it has no place for (a classifier head
    # its training had): ignored and reported so on load, relative to "backbone."
    ignored_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SoleConfig):
        super().__init__()

    # ------------------------------------------------------------------- from the configuration
    @classmethod
    @abc.abstractmethod
    def output_shape(cls, config: SoleConfig) -> tuple[LevelShape, ...]:
        """Width and stride of each map ``forward`` returns, coarsest first, the last at stride 1."""

    @classmethod
    def input_channels(cls, config: SoleConfig) -> int:
        """The width of the voxel features it takes (normalised RGB: ``config.in_channels``)."""
        return config.in_channels

    @classmethod
    @abc.abstractmethod
    def approximate_parameters(cls, config: SoleConfig) -> int:
        """A lower estimate of its parameter count from the settings alone, so that a configuration
        that would allocate a huge network is refused (MAX_PARAMETERS) before it is built."""

    @classmethod
    def settings(cls, config: SoleConfig) -> dict:
        """Its settings: each of ``settings_spec``'s defaults, as ``config.backbone_settings`` changes them."""
        return {**{k: s.default for k, s in cls.settings_spec.items()}, **config.backbone_settings}

    @classmethod
    def check_config(cls, config: SoleConfig) -> None:
        """ConfigError for a setting it does not take or one outside its range."""
        unknown = sorted(set(config.backbone_settings) - set(cls.settings_spec))
        if unknown:
            takes = ", ".join(cls.settings_spec) or "none"
            raise ConfigError(
                f"backbone {cls.name}: unknown backbone_settings {', '.join(unknown)} "
                f"(it takes: {takes})"
            )
        for key, value in config.backbone_settings.items():
            spec = cls.settings_spec[key]
            problem = range_problem(
                key, value, spec.low, spec.high, whole=spec.whole, lengths=spec.lengths
            )
            if problem:
                raise ConfigError(f"backbone {cls.name}: {problem}")

    # ------------------------------------------------------------------------- from checkpoints
    @classmethod
    def recognises(cls, tensors: dict) -> bool:
        """Whether a file's backbone tensors (keys relative to "backbone.") are in this backbone's layout."""
        return False

    @classmethod
    def config_from_state_dict(cls, tensors: dict) -> dict:
        """The SoleConfig changes a file's backbone tensors (keys relative to "backbone.") imply, e.g.
        {"backbone_settings": {...}}: published files carry sizes in their shapes, not in settings."""
        return {}

    # -------------------------------------------------------------------------------- the network
    @abc.abstractmethod
    def forward(self, x) -> list:
        """One SparseTensor per level of ``output_shape``, in that order."""


# ------------------------------------------------------------------------------------- the registry
_REGISTRY: dict[str, type[Backbone]] = {}
# Backbones shipped with sole_ros, by the module that registers them: imported when first named,
# so that neither importing nor validating a configuration of another backbone builds anything.
BUILT_IN_BACKBONES: dict[str, str] = {
    "res16unet34c": "sole_ros.model.backbone",
}


def register_backbone(name: str):
    """Class decorator: ``@register_backbone("mynet")`` makes ``SoleConfig(backbone="mynet")`` build it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a backbone's name must be a non-empty string, not {name!r}")

    def register(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Backbone)):
            raise TypeError(
                f"backbone {name!r}: {cls!r} is not a subclass of "
                "sole_ros.model.backbone_contract.Backbone"
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise TypeError(f"backbone {name!r}: {cls.__name__} does not define {missing}")
        known = _REGISTRY.get(name)
        # the same class again (its module reloaded) replaces itself; another class is a clash
        if known is not None and (known.__module__, known.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(
                f"backbone {name!r} is already registered ({known.__module__}.{known.__qualname__})"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return register


def registered_backbones() -> list[str]:
    """Every name a configuration may give: those registered and those shipped with sole_ros."""
    return sorted(set(_REGISTRY) | set(BUILT_IN_BACKBONES))


def backbone_class(name: str) -> type[Backbone]:
    """The class registered as ``name``; UnknownBackboneError (a ConfigError) naming the registered ones."""
    if name not in _REGISTRY and name in BUILT_IN_BACKBONES:
        importlib.import_module(BUILT_IN_BACKBONES[name])
    if name not in _REGISTRY:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}: registered backbones are "
            f"{', '.join(registered_backbones())}"
        )
    return _REGISTRY[name]


def recognising_backbone(tensors: dict, first: str | None = None) -> type[Backbone] | None:
    """The backbone whose layout a file's backbone tensors (keys relative to "backbone.") are in,
    asking ``first`` before the others; None when no registered backbone recognises them."""
    if not tensors:
        return None
    names = registered_backbones()
    if first in names:
        names.remove(first)
        names.insert(0, first)
    for name in names:
        cls = backbone_class(name)
        if cls.recognises(tensors):
            return cls
    return None
