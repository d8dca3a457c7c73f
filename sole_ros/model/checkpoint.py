"""Safe loading of the published SOLE / Mask3D checkpoints (PyTorch Lightning .ckpt files).

Files are read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers,
plus an explicit allow-list of the OmegaConf classes that Lightning pickles for the
``hyper_parameters``. Any other pickled reference (a class, a function) is refused with
``UnsafeCheckpointError`` before anything from the file runs.

Keys: the network's parameters are ``model.<name>`` (the SoleModel attribute names), plus
``criterion.empty_weight`` and what the backbone names unused (``Backbone.ignored_keys``:
Res16UNet34C's ``final`` layer), which are ignored on purpose.
Every key is checked by name and shape; the ``LoadReport`` lists what was loaded, missing,
unexpected, ignored and mismatched.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import re
import typing
from dataclasses import dataclass, field

import torch

from sole_ros.model.backbone_contract import STATE_DICT_PREFIX as BACKBONE
from sole_ros.model.backbone_contract import backbone_class, recognising_backbone
from sole_ros.model.config import ConfigError, SoleConfig, bound_problem

# Keys a published file holds that SOLE does not use (the reference never reads them either); the
# backbone adds its own (Backbone.ignored_keys: Res16UNet34C's "final." head).
IGNORED_KEYS = ("criterion.empty_weight",)


class CheckpointError(RuntimeError):
    """The checkpoint cannot be used (unreadable, or its keys/shapes do not fit the model)."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled objects beyond plain data: loading it could execute code."""


def _safe_globals() -> list:
    """What Lightning's hyper_parameters (an OmegaConf DictConfig) legitimately pickle."""
    allowed: list = [typing.Any, collections.defaultdict, dict, list, int, float, str, bool, tuple]
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf import base as oc_base
        from omegaconf import nodes as oc_nodes
    except ImportError:  # without omegaconf a file with hyper-parameters is refused, never executed
        return allowed
    allowed += [DictConfig, ListConfig, oc_base.ContainerMetadata, oc_base.Metadata]
    for name in (
        "AnyNode",
        "StringNode",
        "IntegerNode",
        "FloatNode",
        "BooleanNode",
        "BytesNode",
        "PathNode",
    ):
        if hasattr(oc_nodes, name):
            allowed.append(getattr(oc_nodes, name))
    return allowed


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file as plain data; refuse anything that would run code. Every refusal
    (CheckpointError) says why in its message."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL\s+([\w.]+)", str(err))
        what = (
            f"a reference to {found.group(1)}"
            if found
            else "a pickled object that is not plain data"
        )
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it contains {what}, which is neither tensors/plain data nor the "
            f"OmegaConf hyper-parameters a SOLE/Mask3D checkpoint holds. Unpickling it could execute code "
            f"from the file, so nothing was loaded. Use the published checkpoint, or re-save its "
            f"'state_dict' alone from a trusted environment."
        ) from None
    except Exception as err:  # noqa: BLE001 - a corrupt file makes torch raise many kinds, some without text
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(err)}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a dict (got {type(data).__name__})")
    if not data:
        raise CheckpointError(f"{path} holds an empty dict: no state_dict, no weights")
    return data


def _reason(err: BaseException) -> str:
    """The error's first line, or what its type says when it has no text (EOFError of a cut file)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if isinstance(err, EOFError):
        return "the file ends early (truncated, or not a checkpoint)"
    if lines and isinstance(err, (RuntimeError, OSError, ValueError)):
        return lines[0][:300]
    # KeyError('101') and the like say nothing alone: name the kind too
    said = f"{type(err).__name__} {lines[0][:200] if lines else ''}".strip()
    return f"{said} (not a PyTorch checkpoint, or a damaged one)"


def state_dict_of(data: dict, path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a Lightning checkpoint ("state_dict") or of a bare state dict."""
    sd = data.get("state_dict", data)
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"{path}: its state_dict is a {type(sd).__name__}, not a dict of tensors"
        )
    if not sd:
        raise CheckpointError(f"{path} has no weights: its state_dict is missing or empty")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors: {bad[:5]}")
    return sd


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the file did not provide
    unexpected: list[str] = field(default_factory=list)  # file keys the model has no place for
    ignored: list[str] = field(default_factory=list)  # file keys deliberately not used
    mismatched: list[tuple[str, tuple, tuple]] = field(
        default_factory=list
    )  # key, file shape, model shape

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        lines = [f"{len(self.loaded)} tensors loaded, {len(self.ignored)} ignored"]

        def block(title, items):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines.extend(f"  {item}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")

        block("missing from the file", self.missing)
        block("unexpected in the file", self.unexpected)
        block(
            "shape mismatch (key: file vs model)",
            [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched],
        )
        return "\n".join(lines)


def _check_finite(key: str, value: torch.Tensor, path: str) -> None:
    """NaN or inf weights would load silently and make every answer NaN: refuse them by name."""
    if value.is_floating_point() or value.is_complex():
        if not bool(torch.isfinite(value).all()):
            what = "NaN" if bool(torch.isnan(value).any()) else "inf"
            raise CheckpointError(
                f"{path}: {key} holds {what}: a checkpoint's weights must be finite numbers"
            )


def _apply(
    model: torch.nn.Module,
    tensors: dict[str, torch.Tensor],
    report: LoadReport,
    expected_keys: set[str],
    strict: bool,
    path: str,
) -> LoadReport:
    own = model.state_dict()
    usable = {}
    for key, value in tensors.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            usable[key] = value
    report.missing = sorted(expected_keys - set(tensors))
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint {path} does not fit the model:\n{report.describe()}")
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    return report


def _backbone_ignored(model: torch.nn.Module) -> tuple[str, ...]:
    """Keys (relative to "backbone.") of stored files that the model's backbone has no place for."""
    config = getattr(model, "config", None)
    name = config.backbone if isinstance(config, SoleConfig) else SoleConfig().backbone
    return tuple(BACKBONE + key for key in backbone_class(name).ignored_keys)


def load_sole_weights(
    model: torch.nn.Module, path: str | os.PathLike, strict: bool = True, data: dict | None = None
) -> LoadReport:
    """Load a full SOLE checkpoint into ``model`` (a SoleModel). The Fourier matrix comes from the file.

    strict: raise CheckpointError unless every model key is present with the right shape and every
    file key has a place (apart from the known unused ones, which are reported as ignored).
    """
    path = os.fspath(path)
    sd = state_dict_of(data if data is not None else read_checkpoint(path), path)
    ignored = tuple("model." + key for key in _backbone_ignored(model))
    report = LoadReport()
    tensors = {}
    for key, value in sd.items():
        if key in IGNORED_KEYS or (ignored and key.startswith(ignored)):
            report.ignored.append(key)
        elif key.startswith("model."):
            _check_finite(key, value, path)
            tensors[key[len("model.") :]] = value
        else:
            report.unexpected.append(key)
    return _apply(model, tensors, report, set(model.state_dict()), strict, path)


def load_backbone_weights(
    model: torch.nn.Module, path: str | os.PathLike, freeze: bool = True, strict: bool = True
) -> LoadReport:
    """Load only the backbone from a Mask3D/SOLE checkpoint or a backbone-only file.

    Accepts keys ``model.backbone.*`` (Lightning) or ``backbone.*``; every other key is ignored
    (a Mask3D file also holds its own decoder). ``freeze`` makes the backbone fixed, as in SOLE.
    """
    path = os.fspath(path)
    sd = state_dict_of(read_checkpoint(path), path)
    ignored = _backbone_ignored(model)
    report = LoadReport()
    tensors = {}
    for key, value in sd.items():
        name = key[len("model.") :] if key.startswith("model.") else key
        if (ignored and name.startswith(ignored)) or not name.startswith(BACKBONE):
            report.ignored.append(key)
        else:
            _check_finite(key, value, path)
            tensors[name] = value
    if not tensors:
        raise CheckpointError(f"{path} holds no backbone weights (no 'model.backbone.*' keys)")
    expected = {k for k in model.state_dict() if k.startswith(BACKBONE)}
    report = _apply(model, tensors, report, expected, strict, path)
    model.set_backbone_frozen(freeze)
    return report


def _select(hp, dotted: str, default=None):
    """A value from (possibly interpolated) OmegaConf hyper-parameters, or the default."""
    try:
        from omegaconf import OmegaConf

        value = OmegaConf.select(hp, dotted, default=default, throw_on_missing=False)
        if value is not None and not isinstance(value, (int, float, str, bool)):
            value = OmegaConf.to_container(value, resolve=True)
        return value
    except Exception:  # noqa: BLE001 - unresolvable interpolation: fall back to the default
        return default


# SoleConfig fields read from the reference's hydra config (conf/ of the published SOLE: model/sole.yaml,
# data/indoor.yaml, config_base_instance_segmentation.yaml), which its Lightning module saves as
# hyper_parameters["config"]. Keys are looked up under "config." first, then at the top level.
HYPER_PARAMETER_KEYS: tuple[tuple[str, str, type], ...] = (
    ("num_queries", "model.num_queries", int),
    ("num_heads", "model.num_heads", int),
    ("num_decoders", "model.num_decoders", int),
    ("gauss_scale", "model.gauss_scale", float),
    ("hlevels", "model.hlevels", tuple),
    ("sample_sizes", "model.sample_sizes", tuple),
    ("voxel_size", "data.voxel_size", float),
    ("dbscan_eps", "general.dbscan_eps", float),
    ("top_k", "general.topk_per_image", int),  # -1 there: as many as there are queries
)
# Reference settings sole_ros reads and reports without applying (its mask splitting is DBSCAN with
# min_samples 1, always on; score filtering happens at query time).
NOTED_KEYS = (
    "general.use_dbscan",
    "general.dbscan_min_points",
    "general.scores_threshold",
    "general.filter_out_instances",
    "general.iou_threshold",
)


@dataclass
class HyperParameters:
    """What a published checkpoint's hyper-parameters say: ``values`` (SoleConfig field -> value),
    ``sources`` (field -> the key it came from, e.g. "config.model.num_queries"), ``defaulted``
    (fields the file does not give, which keep sole_ros's defaults) and ``noted`` (reference
    settings read but not applied)."""

    values: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    defaulted: list[str] = field(default_factory=list)
    noted: dict = field(default_factory=dict)

    def describe(self, config: SoleConfig | None = None) -> str:
        """Lines for the load report; ``config`` gives the values the defaulted fields took."""
        read = ", ".join(
            f"{self.sources[name]}={_plain(self.values[name])}" for name in self.sources
        )
        lines = [f"hyper-parameters read: {read or 'none'}"]
        if self.defaulted:
            shown = [
                f"{name}={_plain(getattr(config, name))}" if config is not None else name
                for name in self.defaulted
            ]
            lines.append(f"hyper-parameters defaulted (not in the file): {', '.join(shown)}")
        if self.noted:
            lines.append(
                "hyper-parameters read, not applied: "
                + ", ".join(f"{key}={value}" for key, value in self.noted.items())
            )
        return "\n".join(lines)


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def read_hyper_parameters(data: dict) -> HyperParameters:
    """The settings a published (Lightning) checkpoint's ``hyper_parameters`` hold, from
    ``config.<key>`` (the reference's layout: its LightningModule saves its hydra config as
    ``config``) or ``<key>`` (the same keys without the wrapper)."""
    hp = data.get("hyper_parameters")
    found = HyperParameters()
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(hp, dict):
            hp = OmegaConf.create(hp)
        elif not isinstance(hp, DictConfig):
            hp = None
    except Exception:  # noqa: BLE001 - no omegaconf, or values it cannot hold: nothing to read
        hp = None

    def lookup(key):
        if hp is None:
            return None, None
        for prefix in ("config.", ""):
            value = _select(hp, prefix + key)
            if value is not None:
                return prefix + key, value
        return None, None

    for name, key, kind in HYPER_PARAMETER_KEYS:
        source, value = lookup(key)
        if kind is tuple:
            usable = (
                isinstance(value, list)
                and value
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            )
        else:
            usable = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not usable:
            found.defaulted.append(name)
            continue
        if kind is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        # checked before int() and before anything is built: the file may say inf or 1e300
        # (top_k <= 0 is the reference's "one per query", handled below)
        problem = bound_problem(name, tuple(value) if kind is tuple else value)
        if problem and not (name == "top_k" and isinstance(value, int) and value <= 0):
            raise CheckpointError(f"checkpoint hyper-parameter {source}: {problem}")
        found.values[name] = tuple(value) if kind is tuple else kind(value)
        found.sources[name] = source
    top_k = found.values.get("top_k")
    if top_k is not None and top_k <= 0:  # the reference's -1: one candidate per query
        if top_k == -1 and "num_queries" in found.values:
            found.values["top_k"] = found.values["num_queries"]
        else:
            del found.values["top_k"], found.sources["top_k"]
            found.defaulted.append("top_k")
    for key in NOTED_KEYS:
        source, value = lookup(key)
        if isinstance(value, (int, float, str, bool)):
            found.noted[source] = value
    return found


def backbone_tensors(sd: dict) -> dict[str, torch.Tensor]:
    """A published state dict's backbone tensors, keyed as the backbone names them (no "model.backbone.")."""
    prefix = "model." + BACKBONE
    return {key[len(prefix) :]: value for key, value in sd.items() if key.startswith(prefix)}


def config_from_checkpoint(
    data: dict, base: SoleConfig | None = None, hyper: HyperParameters | None = None
) -> SoleConfig:
    """A SoleConfig for a published checkpoint: sizes read from its tensors, settings from its
    hyper-parameters (``read_hyper_parameters``; pass ``hyper`` when already read).

    The backbone is the registered one that recognises the file's backbone tensors (``base``'s
    first), and it says which settings they imply (``Backbone.config_from_state_dict``); with no
    backbone tensors, or none recognised, ``base``'s backbone and settings stay.

    The input mode is "reference": a published network was trained on the reference's voxels
    (first point per voxel) and query seeds (sole_ros/model/voxel.py, sole_ros/model/fps.py).
    """
    cfg = base or SoleConfig()
    sd = state_dict_of(data)
    changes: dict = {"input_mode": "reference"}
    if "model.bg_feature" in sd:
        changes["clip_dim"] = int(sd["model.bg_feature"].shape[1])
    if "model.decoder_norm.weight" in sd:
        changes["hidden_dim"] = int(sd["model.decoder_norm.weight"].shape[0])
    if "model.ffn_attention.0.0.linear1.weight" in sd:
        changes["dim_feedforward"] = int(sd["model.ffn_attention.0.0.linear1.weight"].shape[0])
    tensors = backbone_tensors(sd)
    backbone = recognising_backbone(tensors, first=cfg.backbone)
    if backbone is not None:
        if backbone.name != cfg.backbone:
            changes.update(backbone=backbone.name, backbone_settings={})
        changes.update(backbone.config_from_state_dict(tensors))
    changes.update((hyper or read_hyper_parameters(data)).values)
    config = cfg.replace(**changes)
    try:  # sizes read from the file are checked before a network is built from them
        config.validate()
    except ConfigError as error:
        raise CheckpointError(f"checkpoint configuration: {error}") from None
    return config


def load_sole_model(
    path: str | os.PathLike, device="cpu", config: SoleConfig | None = None, strict: bool = True
):
    """Build a SoleModel sized for the checkpoint at ``path``, load it, return (model, report)."""
    from sole_ros.device import resolve_device
    from sole_ros.model.sole import SoleModel

    data = read_checkpoint(path)
    config = config or config_from_checkpoint(data)
    model = SoleModel(config)
    report = load_sole_weights(model, path, strict=strict, data=data)
    return model.to(resolve_device(device)).eval(), report
