"""Labelled point clouds of synthetic scenes: surface samples (like a reconstructed mesh's vertices,
the input ScanNet-style training expects) and back-projected RGB-D frames (like a live scan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from sole_ros.synthetic.scene import BACKGROUND_CLASS, BACKGROUND_INSTANCE, Scene
from sole_ros.synthetic.shading import shade, to_uint8


@dataclass
class LabelledPointCloud:
    points: np.ndarray  # float32 [N,3] world metres
    colors: np.ndarray  # uint8 [N,3] RGB
    normals: np.ndarray  # float32 [N,3] (zeros where unknown)
    instance_ids: np.ndarray  # int32 [N], 0 = background
    class_ids: np.ndarray  # int32 [N], -1 = background

    def __len__(self) -> int:
        return len(self.points)


def _hidden_inside_solids(points: np.ndarray, primitives) -> np.ndarray:
    hidden = np.zeros(len(points), dtype=bool)
    for primitive in primitives:
        centre, radius = primitive.bounding_sphere()
        near = np.sum((points - centre) ** 2, axis=1) < radius**2
        if near.any():
            hidden[near] |= primitive.contains(points[near])
    return hidden


def sample_point_cloud(
    scene: Scene,
    seed: int = 0,
    object_density: float = 20000.0,
    background_density: float = 2500.0,
    color_noise: float = 0.02,
) -> LabelledPointCloud:
    """Uniform surface samples, ``*_density`` points per square metre, with samples that fall inside
    another solid (where parts of an object or objects touch) removed."""
    rng = np.random.default_rng(np.random.SeedSequence([scene.seed, seed, 1]))
    labelled = scene.labelled_primitives()
    chunks = []
    for primitive, instance_id, class_id in labelled:
        density = background_density if instance_id == BACKGROUND_INSTANCE else object_density
        n = max(int(round(primitive.area() * density)), 1)
        pts, normals = primitive.sample_surface(n, rng)
        chunks.append(
            (
                pts,
                normals,
                np.broadcast_to(np.asarray(primitive.albedo), pts.shape),
                instance_id,
                class_id,
            )
        )
    points = np.concatenate([c[0] for c in chunks])
    normals = np.concatenate([c[1] for c in chunks])
    albedo = np.concatenate([c[2] for c in chunks])
    instance = np.concatenate([np.full(len(c[0]), c[3], np.int32) for c in chunks])
    semantic = np.concatenate([np.full(len(c[0]), c[4], np.int32) for c in chunks])
    keep = ~_hidden_inside_solids(points, [p for p, _, _ in labelled])
    colors = to_uint8(shade(albedo[keep], normals[keep], scene.light_direction), rng, color_noise)
    return LabelledPointCloud(
        points[keep].astype(np.float32),
        colors,
        normals[keep].astype(np.float32),
        instance[keep],
        semantic[keep],
    )


def backproject(
    depth: np.ndarray, K: np.ndarray, pose: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Valid depth pixels as 3D points (world frame when ``pose`` is given) and their flat indices."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    pts = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=1)
    if pose is not None:
        pts = pts @ pose[:3, :3].T + pose[:3, 3]
    return pts, v * depth.shape[1] + u


def fuse_frames(frames: Iterable) -> LabelledPointCloud:
    """All valid depth pixels of the frames in the world frame, with colour and ground-truth labels."""
    parts = []
    for frame in frames:
        pts, flat = backproject(frame.depth, frame.K, frame.pose)
        parts.append(
            (
                pts,
                frame.color.reshape(-1, 3)[flat],
                frame.instance.ravel()[flat],
                frame.semantic.ravel()[flat],
            )
        )
    points = np.concatenate([p[0] for p in parts]).astype(np.float32)
    return LabelledPointCloud(
        points,
        np.concatenate([p[1] for p in parts]),
        np.zeros_like(points),
        np.concatenate([p[2] for p in parts]).astype(np.int32),
        np.concatenate([p[3] for p in parts]).astype(np.int32),
    )


__all__ = [
    "LabelledPointCloud",
    "sample_point_cloud",
    "backproject",
    "fuse_frames",
    "BACKGROUND_CLASS",
]
