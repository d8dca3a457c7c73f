"""Shared open_clip loading: one place that turns a ClipSpec into a ready CLIP model.

Used by the text encoder (sole_ros.model.text) and by the dense image features of scene fusion.
``pretrained`` is an open_clip tag ("openai"), a path to a local weights file, or None for random
weights (tests, demos). ``ClipSpec.tiny()`` names a small architecture registered here so tests run
fast on a CPU without any download.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import torch

TINY_MODEL_NAME = "sole-tiny"
TINY_DENSE_MODEL_NAME = "sole-tiny-dense"

# A small CLIP: 64-d joint space, ViT with 16 px patches on 64 px images, 2-layer text transformer.
# The tokenizer stays CLIP's BPE (vocab 49408) so real phrases tokenise exactly as with ViT-L-14.
_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
_TINY_CONFIGS: dict[str, dict[str, Any]] = {
    TINY_MODEL_NAME: {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 64,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 16,
        },
        "text_cfg": _TINY_TEXT,
    },
    # The same text tower with an image tower big enough to learn dense features of the synthetic
    # classes (sole_ros.training.image_tower): 4 layers of width 128, 16 px patches on 320 px.
    TINY_DENSE_MODEL_NAME: {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 320,
            "layers": 4,
            "width": 128,
            "head_width": 32,
            "patch_size": 16,
        },
        "text_cfg": _TINY_TEXT,
    },
}

_register_lock = threading.Lock()
_registered = False


class ClipWeightsUnavailable(RuntimeError):
    """The requested CLIP weights are neither cached nor downloadable (e.g. offline)."""


@dataclass
class ClipSpec:
    """Which CLIP to load. Defaults are SOLE's: open_clip ViT-L-14 with OpenAI's weights."""

    model_name: str = "ViT-L-14"
    pretrained: str | None = "openai"
    cache_dir: str | None = None
    # OpenAI's CLIP weights were trained with QuickGELU; open_clip's plain "ViT-L-14" config uses
    # GELU. None: follow the weights tag (QuickGELU for "openai", as the reference's CLIP had);
    # True/False: force (for a local file of OpenAI weights, set True or use "ViT-L-14-quickgelu").
    quick_gelu: bool | None = None

    @classmethod
    def tiny(cls) -> "ClipSpec":
        """A small randomly initialised CLIP (embed_dim 64) for tests and demos; fast on a CPU."""
        return cls(model_name=TINY_MODEL_NAME, pretrained=None)


@dataclass
class LoadedClip:
    """An open_clip model in eval mode with what callers need to feed it."""

    model: torch.nn.Module
    tokenizer: Any
    embed_dim: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    image_size: tuple[int, int]
    spec: ClipSpec
    device: torch.device
    # A random CLIP whose image tower was trained here (sole_ros.training.image_tower): its dense
    # image features mean something, at the input short side it was trained for.
    image_tower_trained: bool = False
    dense_short_side: int | None = None

    @property
    def image_features_meaningful(self) -> bool:
        return self.spec.pretrained is not None or self.image_tower_trained


def register_tiny_config() -> None:
    """Make ``sole-tiny`` and ``sole-tiny-dense`` known to open_clip (idempotent). open_clip only
    reads configs from files."""
    global _registered
    import open_clip

    with _register_lock:
        if _registered:
            return
        # open_clip reads a file at once and keeps the config when the file is gone (a later
        # rescan skips a missing path): no folder is left behind per process.
        with tempfile.TemporaryDirectory(prefix="sole_ros_clip_cfg_") as folder:
            for name, config in _TINY_CONFIGS.items():
                if name in open_clip.list_models():
                    continue
                path = os.path.join(folder, f"{name}.json")
                with open(path, "w") as f:
                    json.dump(config, f)
                open_clip.add_model_config(path)
        _registered = True


def uses_quick_gelu(spec: ClipSpec) -> bool:
    """Whether the model must be built with QuickGELU: forced by the spec, else what the tag says."""
    import open_clip

    if spec.quick_gelu is not None:
        return spec.quick_gelu
    if spec.pretrained is None or spec.pretrained not in open_clip.list_pretrained_tags_by_model(
        spec.model_name
    ):
        return False
    return bool(
        open_clip.get_pretrained_cfg(spec.model_name, spec.pretrained).get("quick_gelu", False)
    )


def _missing_weights_message(spec: ClipSpec, reason: str) -> str:
    return (
        f"CLIP weights for model {spec.model_name!r} with pretrained={spec.pretrained!r} could not be "
        f"loaded ({reason}). Without internet, download them once elsewhere (open_clip caches them under "
        f"{spec.cache_dir or '~/.cache/huggingface'}) and copy that cache here, or point `pretrained` at a "
        f"local weights file (e.g. open_clip_pytorch_model.bin / .safetensors for this architecture). "
        f"Use pretrained=None only for random weights (tests)."
    )


def load_clip(spec: ClipSpec, device: str | torch.device = "cpu") -> LoadedClip:
    """Create the open_clip model of ``spec`` on ``device`` in eval mode.

    Raises ClipWeightsUnavailable (a RuntimeError with a one-paragraph explanation, no chained
    traceback) when the weights are not available, and ValueError for an unknown architecture.
    """
    import open_clip

    from sole_ros.device import resolve_device

    device = resolve_device(device)
    register_tiny_config()
    name = spec.model_name
    if name not in open_clip.list_models() and not name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(
            f"unknown open_clip architecture {name!r}; known ones include "
            f"{', '.join(open_clip.list_models()[:8])}, ... and {TINY_MODEL_NAME!r}"
        )
    pretrained = spec.pretrained
    is_tag = False
    if pretrained is not None:
        is_tag = pretrained in open_clip.list_pretrained_tags_by_model(name)
        if not is_tag and not os.path.isfile(os.path.expanduser(pretrained)):
            raise ClipWeightsUnavailable(
                _missing_weights_message(
                    spec,
                    f"{pretrained!r} is neither a known open_clip tag for this model "
                    f"({open_clip.list_pretrained_tags_by_model(name)}) nor an existing file",
                )
            )
        if not is_tag:
            pretrained = os.path.expanduser(pretrained)
    quick_gelu = uses_quick_gelu(spec)
    try:
        model = open_clip.create_model(
            name,
            pretrained=pretrained,
            device=device,
            cache_dir=spec.cache_dir,
            force_quick_gelu=bool(quick_gelu),
        )
    except (RuntimeError, OSError) as err:
        raise ClipWeightsUnavailable(
            _missing_weights_message(spec, str(err).splitlines()[0][:300])
        ) from None
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    size = preprocess.get("size", 224)
    if isinstance(size, int):
        size = (size, size)
    config = open_clip.get_model_config(name) or {}
    embed_dim = int(config.get("embed_dim") or model.text_projection.shape[-1])
    return LoadedClip(
        model=model,
        tokenizer=tokenizer,
        embed_dim=embed_dim,
        image_mean=tuple(float(v) for v in preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        image_std=tuple(float(v) for v in preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
        image_size=(int(size[0]), int(size[1])),
        spec=spec,
        device=device,
    )


__all__ = [
    "ClipSpec",
    "LoadedClip",
    "ClipWeightsUnavailable",
    "load_clip",
    "register_tiny_config",
    "uses_quick_gelu",
    "TINY_MODEL_NAME",
    "TINY_DENSE_MODEL_NAME",
]
