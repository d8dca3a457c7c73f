"""Pinhole cameras and camera trajectories around a scene.

Poses are camera-to-world 4x4 matrices in the optical convention (x right, y down, z forward),
the one ROS uses for ``*_optical_frame`` and the one depth back-projection assumes.
"""

from __future__ import annotations

import numpy as np


def kinect_intrinsics(width: int = 640, height: int = 480) -> np.ndarray:
    """Kinect v1 / PrimeSense intrinsics (fx = fy = 525 at 640x480, square pixels) scaled to the width."""
    scale = width / 640.0
    f = 525.0 * scale
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose of a camera at ``position`` looking at ``target`` (no roll)."""
    position = np.asarray(position, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - position
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:  # looking straight down: any horizontal right vector works
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = position
    return pose


def orbit_trajectory(
    focus,
    num_frames: int,
    radius: float,
    height: float,
    rng: np.random.Generator,
    arc: float = np.pi / 2,
    start_angle: float | None = None,
    jitter: float = 0.02,
) -> list[np.ndarray]:
    """A hand-held-like sweep: an arc around ``focus`` at ``height`` above it, looking at it, with a
    slow height wave and a little positional and aiming jitter."""
    focus = np.asarray(focus, dtype=np.float64)
    start = rng.uniform(0, 2 * np.pi) if start_angle is None else start_angle
    angles = start + np.linspace(0.0, arc, num_frames)
    phase = rng.uniform(0, 2 * np.pi)
    poses = []
    for i, a in enumerate(angles):
        wave = 0.05 * np.sin(phase + 2 * np.pi * i / max(num_frames, 1))
        position = focus + np.array([radius * np.cos(a), radius * np.sin(a), height + wave])
        position += rng.normal(0, jitter, 3)
        target = focus + rng.normal(0, jitter, 3)
        poses.append(look_at(position, target))
    return poses


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unit ray directions in the camera frame for every pixel centre, shape [H*W, 3] row-major.

    Pixel (u, v) has its centre at integer coordinates, the convention of cx = (W-1)/2.
    """
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d = np.stack(
        [(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1
    ).reshape(-1, 3)
    return d / np.linalg.norm(d, axis=1, keepdims=True)
