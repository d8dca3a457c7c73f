"""Depth images rendered from voxel centres (for checking a map against measured depth)."""

from __future__ import annotations

import numpy as np

from .camera import project, world_to_camera

# Largest half-width (pixels) a voxel is drawn with; nearer voxels are clamped to it.
_MAX_HALF_WIDTH = 16
# A voxelised surface is a few voxels thick (sensor noise, pose error); a pixel's depth is the mean
# over the voxels drawn on it within this many voxel sizes of the nearest one. Taking only the
# nearest would put the surface on its front face, about half a voxel too close.
SURFACE_BAND_VOXELS = 1.5


def render_voxel_depth(
    centres: np.ndarray, voxel_size: float, K: np.ndarray, pose: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Depth image of voxels drawn as squares about their projected width at their centres'
    depth. Returns (height, width) float32 metres, NaN where nothing was drawn."""
    pixels, depths = [], []
    if centres.shape[0]:
        camera = world_to_camera(centres.astype(np.float64), pose)
        u, v, z = project(camera, K)
        front = z > 1e-3
        u, v, z = u[front], v[front], z[front]
        column = np.floor(u + 0.5).astype(np.int64)
        row = np.floor(v + 0.5).astype(np.int64)
        # A square of 2*half+1 pixels is closest to the voxel's projected width fx*s/z.
        half = np.round((K[0, 0] * voxel_size / z - 1.0) / 2.0).astype(np.int64)
        np.clip(half, 0, _MAX_HALF_WIDTH, out=half)
        reach = (
            (column + half >= 0)
            & (column - half < width)
            & (row + half >= 0)
            & (row - half < height)
        )
        for h in np.unique(half[reach]):
            group = np.flatnonzero(reach & (half == h))
            for dy in range(-h, h + 1):
                for dx in range(-h, h + 1):
                    c, r = column[group] + dx, row[group] + dy
                    inside = (c >= 0) & (c < width) & (r >= 0) & (r < height)
                    pixels.append(r[inside] * width + c[inside])
                    depths.append(z[group][inside])
    if not pixels:
        return np.full((height, width), np.nan, dtype=np.float32)
    pixel = np.concatenate(pixels)
    depth = np.concatenate(depths)
    nearest = np.full(height * width, np.inf, dtype=np.float32)
    np.minimum.at(nearest, pixel, depth)
    surface = depth <= nearest[pixel] + SURFACE_BAND_VOXELS * voxel_size
    total = np.bincount(pixel[surface], weights=depth[surface], minlength=height * width)
    count = np.bincount(pixel[surface], minlength=height * width)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(count > 0, total / count, np.nan)
    return image.astype(np.float32).reshape(height, width)
