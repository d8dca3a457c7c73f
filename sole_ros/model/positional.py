"""Random Fourier positional encoding of 3D coordinates (Tancik et al.), as SOLE/Mask3D use it.

The random matrix ``gauss_B`` [3, d/2] is a buffer: it is part of a checkpoint and must be loaded
from it, never redrawn, or the decoder's learned weights see different positions.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierPositionalEncoding(nn.Module):
    def __init__(self, d_pos: int, gauss_scale: float = 1.0, d_in: int = 3):
        super().__init__()
        if d_pos % 2:
            raise ValueError("d_pos must be even (sin and cos halves)")
        self.register_buffer("gauss_B", torch.randn(d_in, d_pos // 2) * gauss_scale)

    @property
    def d_pos(self) -> int:
        return 2 * self.gauss_B.shape[1]

    def forward(self, xyz: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """xyz [N, 3] -> [N, d_pos]; coordinates are first mapped to [0, 1] by the box [lo, hi]."""
        with torch.autocast(xyz.device.type, enabled=False):
            span = (hi - lo).float().clamp_min(1e-9)  # a flat axis would divide by zero
            unit = (xyz.float() - lo.float()) / span
            proj = (unit * (2 * math.pi)) @ self.gauss_B.float()
            return torch.cat([proj.sin(), proj.cos()], dim=-1)
