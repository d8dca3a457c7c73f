"""Helpers for the scene tests: real data readers and analytic depth images of simple scenes."""

from __future__ import annotations

import pathlib

import numpy as np

K_PRIMESENSE = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])


def translation(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, 3] = (x, y, z)
    return pose


def rotation_z(angle: float) -> np.ndarray:
    pose = np.eye(4)
    c, s = np.cos(angle), np.sin(angle)
    pose[:2, :2] = [[c, -s], [s, c]]
    return pose


def read_redwood(folder: pathlib.Path):
    """(depths uint16 mm, colours uint8 RGB, camera-to-world poses) of the five frames."""
    from PIL import Image

    lines = (folder / "trajectory.log").read_text().split("\n")
    poses = [
        np.array([[float(v) for v in line.split()] for line in lines[5 * i + 1 : 5 * i + 5]])
        for i in range(5)
    ]
    depths = [np.array(Image.open(folder / "depth" / f"{i:05d}.png")) for i in range(5)]
    colors = [
        np.array(Image.open(folder / "color" / f"{i:05d}.jpg").convert("RGB")) for i in range(5)
    ]
    return depths, colors, poses


def read_mosd(path: pathlib.Path):
    """(points (N,3) float32 with NaN rows, packed rgba uint32, labels uint32) of one scan."""
    import pypcd4

    data = pypcd4.PointCloud.from_path(str(path)).pc_data
    points = np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float32)
    return points, np.ascontiguousarray(data["rgba"]), np.ascontiguousarray(data["label"])


def box_scene_depth(
    camera_x: float,
    width: int = 160,
    height: int = 120,
    wall_z: float = 2.0,
    occluder_z: float = 1.0,
    occluder_half: float = 0.2,
    fx: float = 150.0,
):
    """Depth image (float32 m) and K of a camera at (camera_x, 0, 0) looking along +z at a wall
    z = wall_z, with a square occluder of half-size occluder_half at z = occluder_z centred on
    the z axis. Rays are intersected analytically."""
    K = np.array([[fx, 0.0, (width - 1) / 2], [0.0, fx, (height - 1) / 2], [0.0, 0.0, 1.0]])
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    ray_x = (u - K[0, 2]) / fx
    ray_y = (v - K[1, 2]) / fx
    depth = np.full((height, width), wall_z)
    hit_x = camera_x + ray_x * occluder_z
    hit_y = ray_y * occluder_z
    in_front = (np.abs(hit_x) <= occluder_half) & (np.abs(hit_y) <= occluder_half)
    depth[in_front] = occluder_z
    return depth.astype(np.float32), K


def snapshot_arrays(voxel_map) -> dict:
    snap = voxel_map.export()
    out = {
        "coords": snap.coords.copy(),
        "colors": snap.colors.copy(),
        "observations": snap.observations.copy(),
    }
    if snap.features is not None:
        out["features"] = snap.features.copy()
    return out
