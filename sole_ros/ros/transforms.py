"""Poses from geometry_msgs as 4x4 matrices, and a time-indexed pose buffer.

All but seconds_to_stamp (which builds a builtin_interfaces/Time) are ROS-free and live in
sole_ros.messages.poses, shared with the bag replay; they are re-exported here.

The buffer backs the "pose topic + static sensor extrinsic" mode used when tf2_ros is not
installed: odometry / pose messages fill it, and a frame's sensor pose is looked up at the image
stamp (interpolated: linear translation, slerp rotation), then composed with the extrinsic.
"""

from __future__ import annotations

import math

from builtin_interfaces.msg import Time

from sole_ros.messages.poses import (  # noqa: F401
    QUATERNION_NORM_TOLERANCE,
    MalformedMessage,
    PoseBuffer,
    PoseLookupError,
    check_rigid,
    extrinsic_matrix,
    matrix_from_odometry,
    matrix_from_pose,
    matrix_from_pose_stamped,
    matrix_from_transform,
    matrix_from_transform_stamped,
    pose_to_matrix,
    stamp_to_seconds,
)

__all__ = [
    "MalformedMessage",
    "PoseLookupError",
    "PoseBuffer",
    "stamp_to_seconds",
    "seconds_to_stamp",
    "pose_to_matrix",
    "matrix_from_pose",
    "matrix_from_transform",
    "matrix_from_odometry",
    "matrix_from_pose_stamped",
    "matrix_from_transform_stamped",
    "extrinsic_matrix",
    "check_rigid",
]


def seconds_to_stamp(seconds: float) -> Time:
    """Float seconds -> builtin_interfaces/Time, nanoseconds rounded (carrying into sec)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a ROS stamp needs finite, non-negative seconds, not {seconds}")
    total_ns = round(seconds * 1e9)
    if total_ns // 1_000_000_000 >= 2**31:
        raise ValueError(f"{seconds} s does not fit a ROS stamp (int32 seconds)")
    return Time(sec=total_ns // 1_000_000_000, nanosec=total_ns % 1_000_000_000)
