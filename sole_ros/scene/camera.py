"""Pinhole camera geometry: per-pixel viewing rays (cached per image size and intrinsics) and the
projection of world points into an image.

Pixel (u, v) has its centre at integer coordinates, so K's principal point for a 640x480 image is
near (319.5, 239.5) and the pixel under a projected point is floor(u + 0.5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PixelRays:
    """Rays through every pixel centre, flattened row-major: direction = (x, y, 1) scaled by depth."""

    x: np.ndarray  # (H*W,) float32, (u - cx) / fx
    y: np.ndarray  # (H*W,) float32, (v - cy) / fy
    length: np.ndarray  # (H*W,) float32, |(x, y, 1)|: range = depth * length


class RayCache:
    """A few PixelRays, keyed on image size and intrinsics (a node sees one or two cameras)."""

    def __init__(self, max_entries: int = 4):
        self._entries: dict[bytes, PixelRays] = {}
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, K: np.ndarray, width: int, height: int) -> PixelRays:
        key = (
            np.asarray([width, height], dtype=np.float64).tobytes() + K.astype(np.float64).tobytes()
        )
        with self._lock:
            rays = self._entries.get(key)
            if rays is None:
                rays = _pixel_rays(K, width, height)
                if len(self._entries) >= self._max_entries:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = rays
            return rays


def _pixel_rays(K: np.ndarray, width: int, height: int) -> PixelRays:
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    x = x.astype(np.float32).ravel()
    y = y.astype(np.float32).ravel()
    length = np.sqrt(x * x + y * y + 1.0).astype(np.float32)
    return PixelRays(x=x, y=y, length=length)


def world_to_camera(points_world: np.ndarray, camera_to_world: np.ndarray) -> np.ndarray:
    """(N,3) world points -> (N,3) camera frame, float32: x_cam = R^T (x_world - t)."""
    columns = world_to_camera_columns(*points_world.T, camera_to_world)
    return np.stack(columns, axis=1)


def world_to_camera_columns(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, camera_to_world: np.ndarray
):
    """world_to_camera on three float32 columns (contiguous passes; numpy's (N,3)@(3,3) is slow)."""
    rotation = camera_to_world[:3, :3].astype(np.float32)
    translation = camera_to_world[:3, 3].astype(np.float32)
    dx, dy, dz = x - translation[0], y - translation[1], z - translation[2]
    return tuple(
        dx * rotation[0, axis] + dy * rotation[1, axis] + dz * rotation[2, axis]
        for axis in range(3)
    )


def project(points_camera: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame points -> continuous pixel coordinates (u, v) and depth z. Points with z <= 0
    get u = v = NaN-free garbage; callers mask on z first."""
    z = points_camera[:, 2]
    safe_z = np.where(z > 1e-6, z, 1.0).astype(np.float32)
    x = points_camera[:, 0] / safe_z
    y = points_camera[:, 1] / safe_z
    u = np.float32(K[0, 0]) * x + np.float32(K[0, 1]) * y + np.float32(K[0, 2])
    v = np.float32(K[1, 1]) * y + np.float32(K[1, 2])
    return u, v, z
