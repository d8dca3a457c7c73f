"""RGB-D frames of a synthetic scene by exact ray casting, with ground-truth instance masks.

Every pixel's ray is intersected with the primitives whose bounding sphere projects over it
(a cheap screen-space cull keeps small objects cheap); the nearest hit gives depth, normal,
albedo, instance and class. Colour is shaded like the point cloud; depth then goes through the
Kinect-like sensor model. The ideal depth is kept too, for checks and ablations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from sole_ros.synthetic.camera import kinect_intrinsics, orbit_trajectory, pixel_rays
from sole_ros.synthetic.scene import BACKGROUND_CLASS, BACKGROUND_INSTANCE, Scene
from sole_ros.synthetic.sensor_noise import KinectNoise
from sole_ros.synthetic.shading import shade, to_uint8


@dataclass
class Frame:
    """One RGB-D frame: colour uint8 RGB [H,W,3], depth float32 metres [H,W] (0 = no reading),
    pinhole K [3,3], camera-to-world pose [4,4], and ground truth from the ideal render."""

    color: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    pose: np.ndarray
    instance: np.ndarray  # int32 [H,W], 0 = background or nothing
    semantic: np.ndarray  # int32 [H,W], class id, -1 = background or nothing
    depth_ideal: np.ndarray  # float32 [H,W], noiseless, 0 = nothing hit
    index: int = 0
    stamp: float = 0.0  # seconds since the start of the sequence
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.depth.shape[1], self.depth.shape[0]

    def instance_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """(instance ids [M], boolean masks [M,H,W]) of the objects visible in this frame."""
        ids = np.unique(self.instance)
        ids = ids[ids != BACKGROUND_INSTANCE]
        return ids, self.instance[None] == ids[:, None, None]


@dataclass
class RayHits:
    t: np.ndarray  # distance along the unit ray, inf where nothing
    normal: np.ndarray
    albedo: np.ndarray
    instance: np.ndarray
    semantic: np.ndarray


def _screen_rect(center_cam: np.ndarray, radius: float, K: np.ndarray, width: int, height: int):
    """Pixel rectangle (u0, u1, v0, v1) covering a sphere in camera coordinates, or None if behind."""
    corners = (
        center_cam + radius * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    )
    if corners[:, 2].max() <= 1e-3:
        return None
    if corners[:, 2].min() <= 1e-3:
        return 0, width, 0, height  # straddles the camera plane: test everything
    u = K[0, 0] * corners[:, 0] / corners[:, 2] + K[0, 2]
    v = K[1, 1] * corners[:, 1] / corners[:, 2] + K[1, 2]
    u0, u1 = int(np.floor(u.min())), int(np.ceil(u.max())) + 1
    v0, v1 = int(np.floor(v.min())), int(np.ceil(v.max())) + 1
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, width), min(v1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, u1, v0, v1


def cast_rays(scene: Scene, pose: np.ndarray, K: np.ndarray, width: int, height: int) -> RayHits:
    rays_cam = pixel_rays(K, width, height)
    rot, origin = pose[:3, :3], pose[:3, 3]
    rays_world = rays_cam @ rot.T
    n = width * height
    hits = RayHits(
        np.full(n, np.inf),
        np.zeros((n, 3)),
        np.zeros((n, 3)),
        np.full(n, BACKGROUND_INSTANCE, np.int32),
        np.full(n, BACKGROUND_CLASS, np.int32),
    )
    grid = np.arange(n).reshape(height, width)
    for primitive, instance_id, class_id in scene.labelled_primitives():
        centre, radius = primitive.bounding_sphere()
        rect = _screen_rect((centre - origin) @ rot, radius, K, width, height)
        if rect is None:
            continue
        u0, u1, v0, v1 = rect
        idx = grid[v0:v1, u0:u1].ravel()
        dirs = rays_world[idx]
        t, normal = primitive.intersect(np.broadcast_to(origin, dirs.shape), dirs)
        closer = t < hits.t[idx]
        sel = idx[closer]
        hits.t[sel] = t[closer]
        hits.normal[sel] = normal[closer]
        hits.albedo[sel] = primitive.albedo
        hits.instance[sel] = instance_id
        hits.semantic[sel] = class_id
    return hits


def render_frame(
    scene: Scene,
    pose: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    rng: np.random.Generator,
    noise: KinectNoise | None = KinectNoise(),
    color_noise: float = 0.01,
    index: int = 0,
    stamp: float = 0.0,
) -> Frame:
    hits = cast_rays(scene, pose, K, width, height)
    rays_cam = pixel_rays(K, width, height)
    hit = np.isfinite(hits.t)
    depth_ideal = np.where(hit, hits.t * rays_cam[:, 2], 0.0).reshape(height, width)
    rays_world = rays_cam @ pose[:3, :3].T
    cos_incidence = np.abs(np.sum(hits.normal * rays_world, axis=1)).reshape(height, width)

    background = np.array([0.05, 0.05, 0.06])  # beyond the scene (only visible from odd poses)
    rgb = np.where(hit[:, None], shade(hits.albedo, hits.normal, scene.light_direction), background)
    color = to_uint8(rgb.reshape(height, width, 3), rng, color_noise)
    if noise is None:
        depth = depth_ideal.astype(np.float32)
    else:
        luminance = (hits.albedo @ np.array([0.299, 0.587, 0.114])).reshape(height, width)
        depth = noise.apply(
            depth_ideal, cos_incidence, np.where(hit.reshape(height, width), luminance, 1.0), rng
        )
    return Frame(
        color=color,
        depth=depth,
        K=K.copy(),
        pose=pose.copy(),
        instance=hits.instance.reshape(height, width),
        semantic=hits.semantic.reshape(height, width),
        depth_ideal=depth_ideal.astype(np.float32),
        index=index,
        stamp=stamp,
    )


def default_trajectory(scene: Scene, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """An arc around the main table that keeps it in view: close for tabletops, wider in rooms."""
    if scene.kind == "tabletop":
        radius, height, arc = rng.uniform(0.9, 1.2), rng.uniform(0.45, 0.65), np.pi * 0.6
    else:
        radius, height, arc = rng.uniform(1.6, 2.0), rng.uniform(0.7, 0.9), np.pi * 0.8
    return orbit_trajectory(scene.focus, num_frames, radius, height, rng, arc=arc)


def render_sequence(
    scene: Scene,
    num_frames: int = 20,
    width: int = 320,
    height: int = 240,
    seed: int = 0,
    noise: KinectNoise | None = KinectNoise(),
    poses: list[np.ndarray] | None = None,
    K: np.ndarray | None = None,
    fps: float = 10.0,
) -> Iterator[Frame]:
    """Frames along a camera sweep, one at a time (streamable); deterministic in (scene, seed)."""
    seeds = np.random.SeedSequence([scene.seed, seed]).spawn(num_frames + 1)
    if poses is None:
        poses = default_trajectory(scene, num_frames, np.random.default_rng(seeds[0]))
    K = kinect_intrinsics(width, height) if K is None else np.asarray(K, dtype=np.float64)
    for i, pose in enumerate(poses[:num_frames]):
        yield render_frame(
            scene,
            pose,
            K,
            width,
            height,
            np.random.default_rng(seeds[i + 1]),
            noise,
            index=i,
            stamp=i / fps,
        )
