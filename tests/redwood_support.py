"""Five real RGB-D frames (Redwood, via ../shared/data/redwood_rgbd) for replay and live tests.

    frames = load_redwood()                       # skips the test when the shared data is absent
    dynamic, static = tf_chain(frames[0].world_from_camera)
    for stamp, frame in stream(frames, repeats=2): ...
    expected = direct_voxel_count(frames)         # the map the library builds from them directly

The camera poses are split into the tf chain a robot publishes, map -> odom -> base_link (dynamic)
-> camera_link -> camera_color_optical_frame (static), so that a replay or the node has to compose
the whole chain to get the camera pose back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
from conftest import SHARED_DATA, shared_data

FIXED, ODOM, BASE, CAMERA_LINK, OPTICAL = (
    "map",
    "odom",
    "base_link",
    "camera_link",
    "camera_color_optical_frame",
)
NUM_FRAMES = 5
WIDTH, HEIGHT = 640, 480


# Where the frames lie; load_redwood() goes through shared_data, which skips the test when absent.
REDWOOD = SHARED_DATA / "redwood_rgbd"


@dataclass
class RedwoodFrame:
    index: int
    depth_mm: np.ndarray  # (480, 640) uint16 millimetres, 0 = no reading
    rgb: np.ndarray  # (480, 640, 3) uint8
    K: np.ndarray  # (3, 3) float64 pinhole intrinsics
    world_from_camera: np.ndarray  # (4, 4) float64, the optical frame (z forward, x right, y down)


def _trajectory(path) -> list[np.ndarray]:
    """trajectory.log: per frame a line "i i n", then four rows of camera-to-world."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    poses = []
    for start in range(0, len(rows), 5):
        poses.append(
            np.array(
                [[float(v) for v in row] for row in rows[start + 1 : start + 5]], dtype=np.float64
            )
        )
    return poses


def load_redwood() -> list[RedwoodFrame]:
    """The five frames in order; skips the calling test when ../shared/data is absent."""
    from PIL import Image

    root = shared_data(REDWOOD.name)
    intrinsics = json.loads((root / "camera_primesense.json").read_text())
    K = (
        np.asarray(intrinsics["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T
    )  # stored column-major
    poses = _trajectory(root / "trajectory.log")
    frames = []
    for i in range(NUM_FRAMES):
        with Image.open(root / "depth" / f"{i:05d}.png") as image:
            depth = np.asarray(image).astype(np.uint16)
        with Image.open(root / "color" / f"{i:05d}.jpg") as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        assert depth.shape == (HEIGHT, WIDTH) and rgb.shape == (HEIGHT, WIDTH, 3), (
            depth.shape,
            rgb.shape,
        )
        frames.append(RedwoodFrame(i, depth, rgb, K.copy(), poses[i]))
    return frames


def _transform(rotation=np.eye(3), translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = translation
    return m


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# base_link -> camera_link: a camera mounted 0.1 m forward and 0.3 m up, looking ahead.
BASE_FROM_CAMERA_LINK = _transform(translation=(0.1, 0.0, 0.3))
# camera_link (x forward, y left, z up) -> optical frame (z forward, x right, y down), as ROS drivers publish.
CAMERA_LINK_FROM_OPTICAL = _transform(
    np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
)
# map -> odom: a small offset, published on /tf (a localiser's correction) though it stays put here.
MAP_FROM_ODOM = _transform(_yaw(0.05), (0.5, -0.25, 0.0))


def tf_chain(world_from_camera) -> tuple[dict, dict]:
    """(dynamic, static): {(parent, child): parent_from_child} such that
    map_from_odom @ odom_from_base @ base_from_camera_link @ camera_link_from_optical == world_from_camera."""
    world_from_camera = np.asarray(world_from_camera, dtype=np.float64)
    odom_from_base = (
        np.linalg.inv(MAP_FROM_ODOM)
        @ world_from_camera
        @ np.linalg.inv(CAMERA_LINK_FROM_OPTICAL)
        @ np.linalg.inv(BASE_FROM_CAMERA_LINK)
    )
    dynamic = {(FIXED, ODOM): MAP_FROM_ODOM.copy(), (ODOM, BASE): odom_from_base}
    static = {
        (BASE, CAMERA_LINK): BASE_FROM_CAMERA_LINK.copy(),
        (CAMERA_LINK, OPTICAL): CAMERA_LINK_FROM_OPTICAL.copy(),
    }
    return dynamic, static


def world_from_camera_link(world_from_camera) -> np.ndarray:
    """The pose of camera_link (not the optical frame) for the same camera pose."""
    return np.asarray(world_from_camera, dtype=np.float64) @ np.linalg.inv(CAMERA_LINK_FROM_OPTICAL)


def stream(
    frames, repeats: int = 1, start: float = 100.0, rate: float = 30.0
) -> Iterator[tuple[float, RedwoodFrame]]:
    """(stamp, frame) in playback order: the frames cycled ``repeats`` times at ``rate`` Hz."""
    frames = list(frames)
    for i in range(len(frames) * repeats):
        yield start + i / rate, frames[i % len(frames)]


def node_voxel_map(voxel_size: float = 0.02, max_range: float | None = None):
    """The VoxelMap sole_node builds with its default scene settings and dense features off."""
    from sole_ros.pipeline import PipelineSettings
    from sole_ros.scene import VoxelMap

    defaults = PipelineSettings()
    return VoxelMap(
        voxel_size=voxel_size,
        max_voxels=defaults.max_voxels,
        keep_radius=defaults.keep_radius,
        max_range=max_range,
        feature_dim=0,
    )


def direct_voxel_count(
    frames: Iterable[RedwoodFrame], voxel_size: float = 0.02, max_range: float | None = None
) -> int:
    """Voxels in the map after ingesting ``frames`` straight into the library's VoxelMap with their
    own poses (no messages, no tf): what a replay or the node should build from the same frames."""
    voxel_map = node_voxel_map(voxel_size, max_range)
    for stamp, frame in stream(frames):
        voxel_map.integrate_rgbd(
            frame.depth_mm,
            frame.K,
            frame.world_from_camera,
            color=frame.rgb,
            stamp=stamp,
            depth_scale=0.001,
        )
    return len(voxel_map)


def node_default_voxel_count(frames: Iterable[RedwoodFrame], voxel_size: float = 0.02) -> int:
    """Voxels in the map after ingesting ``frames`` with their own poses through the library's
    pipeline as sole_node (and a replay with its defaults) builds it: with the node's default
    object memory, depth frames also clear what they see through."""
    from sole_ros.memory import ObjectMemory
    from sole_ros.pipeline import PerceptionPipeline
    from sole_ros.settings_table import defaults

    memory = ObjectMemory(voxel_size) if defaults()["memory.enabled"] else None
    pipeline = PerceptionPipeline(node_voxel_map(voxel_size), memory=memory)
    for stamp, frame in stream(frames):
        pipeline.ingest_rgbd(
            frame.depth_mm, frame.K, frame.world_from_camera, color=frame.rgb, stamp=stamp
        )
    return len(pipeline.map)


__all__ = [
    "REDWOOD",
    "RedwoodFrame",
    "load_redwood",
    "tf_chain",
    "stream",
    "direct_voxel_count",
    "node_voxel_map",
    "node_default_voxel_count",
    "world_from_camera_link",
    "FIXED",
    "ODOM",
    "BASE",
    "CAMERA_LINK",
    "OPTICAL",
    "BASE_FROM_CAMERA_LINK",
    "CAMERA_LINK_FROM_OPTICAL",
    "MAP_FROM_ODOM",
]
