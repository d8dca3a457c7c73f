"""View-independent Lambertian shading, shared by rendered frames and sampled point clouds so a
surface has the same colour in both (as a fused RGB-D reconstruction would)."""

from __future__ import annotations

import numpy as np

AMBIENT = 0.45
DIFFUSE = 0.55


def shade(albedo: np.ndarray, normals: np.ndarray, light_direction: np.ndarray) -> np.ndarray:
    """RGB in [0, 1]: albedo * (ambient + diffuse * |n . l|). Two-sided, so inner walls of cups
    and bowls are lit like their outside."""
    lambert = np.abs(normals @ np.asarray(light_direction, dtype=np.float64))
    return np.clip(albedo * (AMBIENT + DIFFUSE * lambert)[..., None], 0.0, 1.0)


def to_uint8(
    rgb: np.ndarray, rng: np.random.Generator | None = None, noise_sigma: float = 0.0
) -> np.ndarray:
    """Quantise colours to uint8, optionally with Gaussian sensor noise (sigma in [0, 1] units)."""
    if rng is not None and noise_sigma > 0:
        rgb = rgb + rng.normal(0, noise_sigma, rgb.shape)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
