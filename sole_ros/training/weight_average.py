"""Weight averaging: one network from two checkpoints of the same architecture.

Interpolating the weights of a network and of a continuation of its training often keeps what
each does best (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022, WiSE-FT):
here, the demo weights' real-scan masks and the continuation's synthetic scores
(sole_ros/weights/README.md). ROS-free; `sole-ros average-weights` is its command line.
"""

from __future__ import annotations

import pathlib

import torch

from sole_ros.model.checkpoint import state_dict_of
from sole_ros.training.checkpointing import load_checkpoint, save_atomic


def average_state_dicts(
    base: dict[str, torch.Tensor], other: dict[str, torch.Tensor], weight: float = 0.5
) -> dict[str, torch.Tensor]:
    """(1 - weight) * base + weight * other for every floating-point tensor. Integer tensors
    (batch-norm counters) are the base's: they count steps, and an average of counts means nothing."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], not {weight}")
    if set(base) != set(other):
        only_base, only_other = sorted(set(base) - set(other)), sorted(set(other) - set(base))
        raise ValueError(
            f"the networks differ: tensors only in the first {only_base[:5]}, "
            f"only in the second {only_other[:5]}"
        )
    shapes = [k for k in base if base[k].shape != other[k].shape or base[k].dtype != other[k].dtype]
    if shapes:
        k = shapes[0]
        raise ValueError(
            f"the networks differ in {len(shapes)} tensors, e.g. {k}: "
            f"{tuple(base[k].shape)} {base[k].dtype} against {tuple(other[k].shape)} {other[k].dtype}"
        )
    # this expression, not torch.lerp (which rounds differently in the last bit): the demo weights
    # were made with it, and scripts/train_demo_weights.sh repeats them tensor for tensor
    return {
        k: (1 - weight) * v + weight * other[k] if v.is_floating_point() else v.clone()
        for k, v in base.items()
    }


def average_checkpoints(base, other, destination, weight: float = 0.5) -> pathlib.Path:
    """Write ``base`` with its network replaced by the average with ``other``'s (see
    average_state_dicts). Everything else (settings, post-processing, the CLIP, progress) is the
    base's, so the result loads and behaves wherever the base does. Atomic like every save."""
    data = load_checkpoint(base)
    merged = average_state_dicts(
        state_dict_of(data, str(base)), state_dict_of(load_checkpoint(other), str(other)), weight
    )
    if "state_dict" in data:
        data = {**data, "state_dict": merged}
    else:  # a bare state dict
        data = merged
    return save_atomic(data, destination)
