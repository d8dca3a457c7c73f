"""Building the pieces of a run from its TrainConfig: network config, CLIP text encoders, datasets.

Shared by training and evaluation so both see the same model sizes, text space and data.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from sole_ros.clip import ClipSpec, LoadedClip, load_clip
from sole_ros.model.config import SoleConfig
from sole_ros.model.text import TextEncoder
from sole_ros.training.config import TrainConfig

CAPTION_PROMPT = "{}"  # captions are encoded as they are
CLASS_PROMPT = (
    "a {} in a scene."  # SOLE's prompt: class names at evaluation, entity phrases, oracle features
)
EVAL_FEATURE_SEED = 0  # the stand-in point features of evaluation scenes (build_dataset)


def sole_config_for(config: TrainConfig, clip_dim: int) -> SoleConfig:
    if config.model_size not in ("paper", "tiny"):
        raise ValueError(f"model_size must be 'paper' or 'tiny', got {config.model_size!r}")
    base = SoleConfig() if config.model_size == "paper" else SoleConfig.tiny()
    overrides = {
        k: tuple(v) if isinstance(v, list) else v for k, v in config.model_overrides.items()
    }
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SoleConfig)}
    if unknown:
        raise ValueError(f"unknown model settings: {sorted(unknown)}")
    sole = base.replace(**overrides, clip_dim=clip_dim, freeze_backbone=config.backbone_frozen)
    sole.validate()
    return sole


def sole_config_from_dict(values: dict) -> SoleConfig:
    return SoleConfig.from_dict(values)


def load_run_clip(
    config: TrainConfig, device: torch.device, state_dict: dict | None = None
) -> LoadedClip:
    """The run's CLIP. Random weights (``clip_pretrained=None``) are drawn from the run's seed, so
    every DDP process gets the same text space, and are saved in the checkpoints."""
    spec = ClipSpec(model_name=config.clip_model, pretrained=config.clip_pretrained)
    if config.clip_pretrained is None:
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(config.seed + 7919)
            loaded = load_clip(spec, device)
    else:
        loaded = load_clip(spec, device)
    if state_dict is not None:
        loaded.model.load_state_dict(state_dict)
    loaded.model.requires_grad_(False)
    return loaded


def text_encoders(loaded: LoadedClip, device: torch.device) -> tuple[TextEncoder, TextEncoder]:
    """(captions as given, class names and entity phrases with SOLE's prompt), sharing one CLIP.

    Entity phrases ("mug", "a handle") go through the prompt the queries use, so that MEA aligns
    masks with the way people ask for objects; captions are whole sentences and stay as written."""
    return (
        TextEncoder(device=device, prompt=CAPTION_PROMPT, loaded=loaded),
        TextEncoder(device=device, prompt=CLASS_PROMPT, loaded=loaded),
    )


def encode_each(encoder: TextEncoder):
    """``encoder.encode`` one phrase at a time: a phrase's embedding then does not depend on which
    other phrases happened to be encoded with it (batched matmuls differ in the last bits), which
    keeps a resumed run bit-identical to an uninterrupted one. Results are cached per phrase."""

    def encode(phrases) -> torch.Tensor:
        return torch.cat([encoder.encode([p]) for p in phrases])

    return encode


def build_dataset(config: TrainConfig, split: str, feature_encoder: TextEncoder | None):
    """The scenes of ``split`` ("train" or "eval") as a sequence of SceneSample.

    ``feature_encoder`` writes the synthetic scenes' stand-in point features (TextOracleFeatures):
    pass the class encoder (SOLE's query prompt), so they match the way objects are asked for."""
    data = config.data
    if data.kind == "synthetic":
        from sole_ros.datasets.synthetic_dataset import SyntheticScenes, TextOracleFeatures

        first = data.synthetic_first_seed + (0 if split == "train" else data.synthetic_count)
        count = data.synthetic_count if split == "train" else data.synthetic_eval_count
        features = None
        if feature_encoder is not None:
            each = encode_each(feature_encoder)

            def encode(phrases):
                return each(list(phrases)).cpu().numpy()

            # The evaluation scenes' features must not depend on the model scored on them, so
            # they take a fixed seed (0, the seed of every earlier figure), not the run's.
            features = TextOracleFeatures(
                encode,
                noise=data.oracle_feature_noise,
                unseen=data.oracle_unseen,
                seed=config.seed if split == "train" else EVAL_FEATURE_SEED,
            )
        mixed = data.synthetic_kind == "mixed"
        return SyntheticScenes(
            range(first, first + count),
            kind="tabletop" if mixed else data.synthetic_kind,
            source=data.synthetic_source,
            max_points=data.synthetic_max_points,
            room_max_points=data.synthetic_room_max_points,
            num_frames=data.synthetic_frames,
            features=features,
            mixed_kinds=mixed,
            clutter=data.synthetic_clutter,
            object_sizes=data.synthetic_object_sizes,
        )
    if data.kind in ("scannet", "scannet200"):
        from sole_ros.datasets import PointFeatureFolder, ProcessedScanNet, ReleasedTargets

        if not data.root:
            raise ValueError(f"data.root is needed for {data.kind}: the processed ScanNet folder")
        features = PointFeatureFolder(data.features_dir) if data.features_dir else None
        targets = (
            ReleasedTargets(data.mca_dir, data.mea_dir) if (data.mca_dir or data.mea_dir) else None
        )
        mode = data.train_mode if split == "train" else data.eval_mode
        return ProcessedScanNet(data.root, mode, features=features, targets=targets)
    if data.kind == "mosd":
        from sole_ros.datasets.mosd import MosdScans

        if not data.root:
            raise ValueError("data.root is needed for mosd: the folder of .pcd scans")
        return MosdScans(data.root)
    raise ValueError(
        f"data.kind must be 'synthetic', 'scannet', 'scannet200' or 'mosd', got {data.kind!r}"
    )


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation stream of one scene in one epoch: the same on a resumed run."""
    return np.random.default_rng([seed, epoch, index])
