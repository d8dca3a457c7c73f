"""Showing depth frames to the object memory: an object whose space the camera sees through,
frame after frame, is gone (the geometry is in sole_ros/scene/free_space.py)."""

from __future__ import annotations

import math

import numpy as np

from sole_ros.scene import voxel_keys
from sole_ros.scene.free_space import measured_and_point_depth


def key_centres(keys: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N,) packed voxel keys -> (N,3) float64 world centres, as the map exports them."""
    if not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    return (voxel_keys.unpack(np.asarray(keys, dtype=np.int64)) + 0.5) * float(voxel_size)


def observe_depth_frame(memory, depth_m, K, pose_world_from_camera, tolerance: float) -> list[int]:
    """Show one depth frame to an ObjectMemory: the remembered voxels it saw through and those it
    saw occupied go to ``memory.observe_free``. Returns the ids retired by this frame.

    Every remembered voxel is tested, including those the map has evicted: an object is judged on
    what it was, not on what the map still holds. Costs one projection of all remembered voxels."""
    keys = memory.all_keys()
    centres = key_centres(keys, memory.voxel_size)
    z, measured, nearest = measured_and_point_depth(
        centres, depth_m, K, pose_world_from_camera, tolerance
    )
    with np.errstate(invalid="ignore"):
        through = nearest > z + tolerance
        occupied = np.abs(measured - z) <= tolerance
    return memory.observe_free(keys[through], seen_occupied_keys=keys[occupied])
