"""One device setting for the whole library: "auto" (CUDA when available), "cpu", "cuda[:N]"."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(setting: str | torch.device = "auto") -> torch.device:
    if isinstance(setting, torch.device):
        return setting
    setting = (setting or "auto").strip().lower()
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {setting!r} requested but CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {setting!r}: use 'auto', 'cpu' or 'cuda[:N]'")
    return device


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on the GPU when enabled; a no-op on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
