"""What one depth image says about remembered voxels: seen through (empty) or seen occupied.

A depth pixel measures the first surface along its ray, so every point on that ray nearer than the
measurement is empty space. A remembered voxel whose centre projects onto a pixel that measured
farther than the centre (by more than a tolerance) was seen through: whatever occupied it has
gone. One whose centre lies within the tolerance of the measurement was seen occupied. A voxel
behind the measured surface (occluded), outside the image, behind the camera or under a pixel
without a reading is neither: the frame says nothing about it.

Conventions are the map's (sole_ros/scene/camera.py): pinhole K with pixel centres at integer
coordinates, poses camera-to-world in the optical frame (x right, y down, z forward), depth as
the z coordinate in the camera frame, metres. The tolerance should cover half a voxel's diagonal
(a centre is up to that far from the surface it stands for), depth noise and pose error: two to
three voxel sizes is a sound start.
"""
from __future__ import annotations

import math

import numpy as np

from sole_ros.scene import voxel_keys
from sole_ros.scene.camera import project, world_to_camera
from sole_ros.scene.validation import check_intrinsics, check_pose

# Points nearer the camera plane than this (metres) are not projected (as in scene/rendering.py).
MIN_POINT_DEPTH = 1e-3


def key_centres(keys: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N,) packed voxel keys -> (N,3) float64 world centres, as the map exports them."""
    if not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    return (voxel_keys.unpack(np.asarray(keys, dtype=np.int64)) + 0.5) * float(voxel_size)


def _measured_and_point_depth(centres, depth_m, K, pose_world_from_camera, tolerance):
    """Per point: its depth in the camera and the measured depth under it (NaN where the frame
    has no reading there: outside the image, behind the camera, or no valid pixel)."""
    points = np.asarray(centres)
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
        raise ValueError(f"centres must be an (N,3) array of numbers, got shape {points.shape}, "
                         f"dtype {points.dtype}")
    points = points.astype(np.float64, copy=False)
    if not np.all(np.isfinite(points)):
        raise ValueError("centres contain NaN or inf")
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.shape[0] < 1 or depth.shape[1] < 1:
        raise ValueError(f"depth must be a non-empty 2D image (H,W), got shape {depth.shape}")
    if depth.dtype not in (np.float32, np.float64):
        raise ValueError(f"depth must be float metres (float32/float64), got {depth.dtype}: "
                         "scale integer depth (e.g. uint16 millimetres) to metres first")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number of metres >= 0, got {tolerance!r}")
    height, width = depth.shape
    K = check_intrinsics(K, width, height)
    pose = check_pose(pose_world_from_camera, "pose_world_from_camera")
    n = points.shape[0]
    measured = np.full(n, np.nan, dtype=np.float64)
    if n == 0:
        return np.zeros(0, dtype=np.float64), measured
    camera = world_to_camera(points, pose)
    u, v, z = project(camera, K)
    z = z.astype(np.float64)
    column = np.floor(u + 0.5)
    row = np.floor(v + 0.5)
    visible = (z > MIN_POINT_DEPTH) & (column >= 0) & (column < width) & (row >= 0) & (row < height)
    index = np.flatnonzero(visible)
    pixel = row[index].astype(np.int64) * width + column[index].astype(np.int64)
    reading = depth.reshape(-1)[pixel].astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(reading) & (reading > 0)
    measured[index[valid]] = reading[valid]
    return z, measured


def seen_through(centres, depth_m, K, pose_world_from_camera, tolerance: float) -> np.ndarray:
    """Bool mask of the (N,3) world points the camera saw past: in view, under a valid depth
    reading, and nearer than it by more than ``tolerance`` metres, so the space is empty now."""
    z, measured = _measured_and_point_depth(centres, depth_m, K, pose_world_from_camera, tolerance)
    with np.errstate(invalid="ignore"):
        return measured > z + tolerance


def seen_occupied(centres, depth_m, K, pose_world_from_camera, tolerance: float) -> np.ndarray:
    """Bool mask of the (N,3) world points whose depth is within ``tolerance`` metres of the
    reading under them: the camera saw a surface there."""
    z, measured = _measured_and_point_depth(centres, depth_m, K, pose_world_from_camera, tolerance)
    with np.errstate(invalid="ignore"):
        return np.abs(measured - z) <= tolerance


def observe_depth_frame(memory, depth_m, K, pose_world_from_camera, tolerance: float) -> list[int]:
    """Show one depth frame to an ObjectMemory: the remembered voxels it saw through and those it
    saw occupied go to ``memory.observe_free``. Returns the ids retired by this frame.

    Every remembered voxel is tested, including those the map has evicted: an object is judged on
    what it was, not on what the map still holds. Costs one projection of all remembered voxels."""
    keys = memory.all_keys()
    centres = key_centres(keys, memory.voxel_size)
    z, measured = _measured_and_point_depth(centres, depth_m, K, pose_world_from_camera, tolerance)
    with np.errstate(invalid="ignore"):
        through = measured > z + tolerance
        occupied = np.abs(measured - z) <= tolerance
    return memory.observe_free(keys[through], seen_occupied_keys=keys[occupied])
