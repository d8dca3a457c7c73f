"""Run checkpoints: the network in the published layout (``state_dict`` with ``model.`` keys, so
sole_ros.model.checkpoint loads it like a SOLE release), plus what a resume needs.

Extra keys: ``hyper_parameters`` (plain dicts: sole_config, train_config, clip), ``clip_state_dict``
(only for randomly initialised CLIPs, whose weights define the text space), ``optimizer``,
``scheduler``, ``scaler``, ``progress`` (epoch, step, batch within the epoch), the RNG states. Writes are atomic
(temporary file, then rename), so an interrupted save never leaves a broken ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import torch

from sole_ros.model.checkpoint import read_checkpoint


@dataclasses.dataclass
class Progress:
    epoch: int = 0  # epoch in progress
    batch: int = 0  # batches of that epoch already done
    step: int = 0  # optimiser steps done in total


def _plain(value):
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_checkpoint(
    path,
    model,
    sole_config,
    train_config,
    clip=None,
    optimizer=None,
    scheduler=None,
    scaler=None,
    progress: Progress | None = None,
) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()},
        "hyper_parameters": {
            "sole_config": _plain(sole_config),
            "train_config": _plain(train_config),
            "clip": {
                "model_name": train_config.clip_model,
                "pretrained": train_config.clip_pretrained,
            },
        },
        "progress": _plain(progress or Progress()),
    }
    if clip is not None and train_config.clip_pretrained is None:
        payload["clip_state_dict"] = {
            k: v.detach().cpu() for k, v in clip.model.state_dict().items()
        }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    # the training's random draws (voxel key sampling) continue where they were on a resume
    payload["torch_rng"] = torch.get_rng_state()
    if torch.cuda.is_available():
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    return save_atomic(payload, path)


def save_atomic(payload: dict, path) -> pathlib.Path:
    """torch.save to a temporary file, then rename: an interrupted save never leaves a broken file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


INFERENCE_SETTINGS = ("dbscan_eps", "top_k", "min_part_fraction", "duplicate_iou")


def export_for_inference(source, destination, inference: dict | None = None) -> pathlib.Path:
    """A copy of a run checkpoint with only what inference needs (network, settings, the random
    CLIP's weights, progress): no optimiser, scheduler or RNG state. Atomic like every save.

    ``inference`` changes the post-processing settings stored with the network (the keys of
    INFERENCE_SETTINGS), e.g. for the scenes the weights are meant for; training never uses them."""
    data = load_checkpoint(source)
    keep = {
        k: data[k]
        for k in ("state_dict", "hyper_parameters", "clip_state_dict", "progress")
        if k in data
    }
    if inference:
        unknown = set(inference) - set(INFERENCE_SETTINGS)
        if unknown:
            raise ValueError(
                f"not inference settings: {sorted(unknown)} (allowed: {', '.join(INFERENCE_SETTINGS)})"
            )
        keep["hyper_parameters"] = {
            **keep["hyper_parameters"],
            "sole_config": {**keep["hyper_parameters"]["sole_config"], **inference},
        }
    return save_atomic(keep, destination)


def load_checkpoint(path) -> dict:
    """A run checkpoint as plain data (read safely: tensors and containers only)."""
    return read_checkpoint(path)


def model_state(data: dict) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v for k, v in data["state_dict"].items() if k.startswith("model.")}


def restore_rng(data: dict) -> None:
    if "torch_rng" in data:
        torch.set_rng_state(data["torch_rng"])
    if (
        "cuda_rng" in data
        and torch.cuda.is_available()
        and len(data["cuda_rng"]) == torch.cuda.device_count()
    ):
        torch.cuda.set_rng_state_all(data["cuda_rng"])


def parameter_digest(model) -> str:
    """SHA-256 of every parameter and buffer, in name order: equal digests = identical replicas."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
