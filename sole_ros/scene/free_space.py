"""What one depth image says about points of the world: seen through (empty) or seen occupied.

A depth pixel measures the first surface along its ray, so every point on that ray nearer than the
measurement is empty space. A voxel whose centre projects onto pixels that all measured farther
than the centre (by more than a tolerance; all pixels within EDGE_MARGIN_PIXELS, so a silhouette
is not carved) was seen through: whatever occupied it has gone. One whose centre lies within the
tolerance of the measurement was seen occupied. A voxel behind the measured surface (occluded),
outside the image, behind the camera or under a pixel without a reading is neither: the frame
says nothing about it.

Conventions are the map's (sole_ros/scene/camera.py): pinhole K with pixel centres at integer
coordinates, poses camera-to-world in the optical frame (x right, y down, z forward), depth as
the z coordinate in the camera frame, metres. The tolerance should cover half a voxel's diagonal
(a centre is up to that far from the surface it stands for), depth noise and pose error: two to
three voxel sizes is a sound start.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import minimum_filter

from .camera import project, world_to_camera
from .validation import check_intrinsics, check_pose

# Points nearer the camera plane than this (metres) are not projected (as in scene/rendering.py).
MIN_POINT_DEPTH = 1e-3

# A point counts as seen through only if every pixel within this many pixels of where it projects
# measured farther: a voxel's centre on an object's silhouette often projects one or two pixels
# off the object, onto the background far behind, and must not be carved for it.
EDGE_MARGIN_PIXELS = 2


def measured_and_point_depth(centres, depth_m, K, pose_world_from_camera, tolerance):
    """Per point: its depth in the camera, the measured depth under it, and the nearest reading
    within EDGE_MARGIN_PIXELS of it (both NaN where the frame has no reading under the point:
    outside the image, behind the camera, no valid pixel)."""
    points = np.asarray(centres)
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
        raise ValueError(
            f"centres must be an (N,3) array of numbers, got shape {points.shape}, "
            f"dtype {points.dtype}"
        )
    points = points.astype(np.float64, copy=False)
    if not np.all(np.isfinite(points)):
        raise ValueError("centres contain NaN or inf")
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.shape[0] < 1 or depth.shape[1] < 1:
        raise ValueError(f"depth must be a non-empty 2D image (H,W), got shape {depth.shape}")
    if depth.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"depth must be float metres (float32/float64), got {depth.dtype}: "
            "scale integer depth (e.g. uint16 millimetres) to metres first"
        )
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float, np.floating, np.integer))
        or not (math.isfinite(tolerance) and tolerance >= 0)
    ):
        raise ValueError(f"tolerance must be a finite number of metres >= 0, got {tolerance!r}")
    height, width = depth.shape
    K = check_intrinsics(K, width, height)
    pose = check_pose(pose_world_from_camera, "pose_world_from_camera")
    n = points.shape[0]
    measured = np.full(n, np.nan, dtype=np.float64)
    nearest = np.full(n, np.nan, dtype=np.float64)
    if n == 0:
        return np.zeros(0, dtype=np.float64), measured, nearest
    camera = world_to_camera(points, pose)
    u, v, z = project(camera, K)
    z = z.astype(np.float64)
    column = np.floor(u + 0.5)
    row = np.floor(v + 0.5)
    visible = (z > MIN_POINT_DEPTH) & (column >= 0) & (column < width) & (row >= 0) & (row < height)
    index = np.flatnonzero(visible)
    pixel = row[index].astype(np.int64) * width + column[index].astype(np.int64)
    with np.errstate(invalid="ignore"):
        readable = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf)
    # the nearest reading around each pixel; scattered missing readings neither help nor hinder
    window = minimum_filter(readable, size=2 * EDGE_MARGIN_PIXELS + 1, mode="nearest")
    under = readable.reshape(-1)[pixel].astype(np.float64)
    found = np.isfinite(under)  # the pixel under the point itself must have a reading
    measured[index[found]] = under[found]
    nearest[index[found]] = window.reshape(-1)[pixel[found]]
    return z, measured, nearest


def seen_through(centres, depth_m, K, pose_world_from_camera, tolerance: float) -> np.ndarray:
    """Bool mask of the (N,3) world points the camera saw past: in view, under a valid depth
    reading, and nearer than it by more than ``tolerance`` metres, so the space is empty now."""
    z, _, nearest = measured_and_point_depth(centres, depth_m, K, pose_world_from_camera, tolerance)
    with np.errstate(invalid="ignore"):
        return nearest > z + tolerance


def seen_occupied(centres, depth_m, K, pose_world_from_camera, tolerance: float) -> np.ndarray:
    """Bool mask of the (N,3) world points whose depth is within ``tolerance`` metres of the
    reading under them: the camera saw a surface there."""
    z, measured, _ = measured_and_point_depth(
        centres, depth_m, K, pose_world_from_camera, tolerance
    )
    with np.errstate(invalid="ignore"):
        return np.abs(measured - z) <= tolerance
