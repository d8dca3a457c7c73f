"""Poses from geometry_msgs as 4x4 matrices, and a time-indexed pose buffer, without ROS.

Duck-typed on the messages' field names (rclpy messages and rosbags dataclasses alike).

The buffer backs the "pose topic + static sensor extrinsic" mode used when tf2_ros is not
installed: odometry / pose messages fill it, and a frame's sensor pose is looked up at the image
stamp (interpolated: linear translation, slerp rotation), then composed with the extrinsic.
"""

from __future__ import annotations

import bisect
import math
import threading

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from sole_ros.messages.errors import MalformedMessage

__all__ = [
    "MalformedMessage",
    "PoseLookupError",
    "PoseBuffer",
    "stamp_to_seconds",
    "pose_to_matrix",
    "matrix_from_pose",
    "matrix_from_transform",
    "matrix_from_odometry",
    "matrix_from_pose_stamped",
    "matrix_from_transform_stamped",
    "extrinsic_matrix",
    "check_rigid",
    "POSE_END_TOLERANCE",
]

QUATERNION_NORM_TOLERANCE = 1e-3  # well above float32 rounding, well below a real mistake
# A stamp this close past the first or last pose of a pose stream takes that pose (no
# extrapolation): node and bag replay alike.
POSE_END_TOLERANCE = 0.1


def stamp_to_seconds(stamp) -> float:
    """builtin_interfaces/Time (or anything with sec, nanosec) -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def pose_to_matrix(
    position, orientation, *, tolerance: float = QUATERNION_NORM_TOLERANCE
) -> np.ndarray:
    """4x4 float64 from a position (Point/Vector3: x,y,z) and a Quaternion (x,y,z,w).

    The quaternion must be finite with a norm within ``tolerance`` of 1 (it is then
    normalised); otherwise MalformedMessage says why.
    """
    t = np.array([position.x, position.y, position.z], dtype=np.float64)
    q = np.array([orientation.x, orientation.y, orientation.z, orientation.w], dtype=np.float64)
    if not np.isfinite(t).all():
        raise MalformedMessage(f"position is not finite: {t.tolist()}")
    if not np.isfinite(q).all():
        raise MalformedMessage(f"quaternion is not finite: {q.tolist()}")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > tolerance:
        raise MalformedMessage(
            f"quaternion (x,y,z,w)={q.tolist()} has norm {norm:.6g}, not 1 within {tolerance:g}"
        )
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat(q / norm).as_matrix()
    matrix[:3, 3] = t
    return matrix


def matrix_from_pose(pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4."""
    return pose_to_matrix(pose.position, pose.orientation)


def matrix_from_transform(transform) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4."""
    return pose_to_matrix(transform.translation, transform.rotation)


def matrix_from_odometry(msg) -> np.ndarray:
    """nav_msgs/Odometry -> header.frame_id-from-child_frame_id 4x4 (covariance ignored)."""
    return matrix_from_pose(msg.pose.pose)


def matrix_from_pose_stamped(msg) -> np.ndarray:
    """geometry_msgs/PoseStamped (or PoseWithCovarianceStamped) -> 4x4 in header.frame_id."""
    pose = msg.pose.pose if hasattr(msg.pose, "covariance") else msg.pose
    return matrix_from_pose(pose)


def matrix_from_transform_stamped(msg) -> np.ndarray:
    """geometry_msgs/TransformStamped -> header.frame_id-from-child_frame_id 4x4."""
    return matrix_from_transform(msg.transform)


def check_rigid(matrix, *, tolerance: float = 1e-4) -> np.ndarray:
    """A 4x4 rigid transform as float64, or ValueError saying what is wrong with it."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ValueError(f"a transform must be 4x4, not {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("transform has non-finite entries")
    r = m[:3, :3]
    if not np.allclose(m[3], [0, 0, 0, 1], atol=tolerance):
        raise ValueError(f"transform's last row must be [0 0 0 1], not {m[3].tolist()}")
    if not np.allclose(r @ r.T, np.eye(3), atol=tolerance) or np.linalg.det(r) < 0:
        raise ValueError("transform's 3x3 block is not a rotation")
    return m


def extrinsic_matrix(extrinsic) -> np.ndarray:
    """A static extrinsic as 4x4: (x, y, z, roll, pitch, yaw) in metres/radians, or a 4x4.

    roll/pitch/yaw are about the fixed x, y, z axes (R = Rz(yaw) Ry(pitch) Rx(roll)), the
    convention of ROS (REP 103) and static_transform_publisher.
    """
    values = np.asarray(extrinsic, dtype=np.float64)
    if values.shape == (6,):
        if not np.isfinite(values).all():
            raise ValueError(f"extrinsic has non-finite values: {values.tolist()}")
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("xyz", values[3:]).as_matrix()  # lower case: fixed axes
        m[:3, 3] = values[:3]
        return m
    if values.shape in ((4, 4), (16,)):
        return check_rigid(values.reshape(4, 4))
    raise ValueError(
        f"extrinsic must be [x, y, z, roll, pitch, yaw] or a 4x4, not shape {values.shape}"
    )


class PoseLookupError(LookupError):
    """No pose can be given for a stamp; ``str(exc)`` says why (too old, too new, empty...)."""


class PoseBuffer:
    """Time-indexed world-from-base poses, interpolated at lookup. Thread-safe.

    Keeps at most ``max_age`` seconds (relative to the newest pose) and ``max_size`` poses.
    A pose older than the newest by more than ``max_age`` means time jumped back (a bag
    restarted, a simulator reset): the buffer starts over rather than refusing every new pose.
    """

    def __init__(self, max_age: float = 10.0, max_size: int = 10_000, max_gap: float | None = None):
        if max_age <= 0 or max_size < 1:
            raise ValueError("max_age must be > 0 and max_size >= 1")
        self.max_age = float(max_age)
        self.max_size = int(max_size)
        # Interpolating across a longer gap than this is refused (the motion there is unknown).
        self.max_gap = max_gap
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()

    def add(self, stamp_seconds: float, world_from_base) -> None:
        """Insert a pose (4x4); a pose with the same stamp replaces the old one."""
        matrix = check_rigid(world_from_base, tolerance=1e-3)
        stamp = float(stamp_seconds)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, not {stamp}")
        with self._lock:
            if self._stamps and stamp < self._stamps[-1] - self.max_age:
                self._stamps.clear()
                self._poses.clear()
            i = bisect.bisect_left(self._stamps, stamp)
            if i < len(self._stamps) and self._stamps[i] == stamp:
                self._poses[i] = matrix
            else:
                self._stamps.insert(i, stamp)
                self._poses.insert(i, matrix)
            # Forget what is too old or too much, oldest first.
            cut = bisect.bisect_left(self._stamps, self._stamps[-1] - self.max_age)
            cut = max(cut, len(self._stamps) - self.max_size)
            if cut > 0:
                del self._stamps[:cut]
                del self._poses[:cut]

    def add_message(self, msg) -> None:
        """Insert nav_msgs/Odometry, geometry_msgs/PoseStamped(/WithCovariance) or TransformStamped."""
        if hasattr(msg, "transform"):
            matrix = matrix_from_transform_stamped(msg)
        else:  # Odometry and PoseWithCovarianceStamped carry pose.pose, PoseStamped pose
            matrix = matrix_from_pose_stamped(msg)
        self.add(stamp_to_seconds(msg.header.stamp), matrix)

    def lookup(
        self, stamp_seconds: float, tolerance: float = 0.05, base_from_sensor=None
    ) -> np.ndarray:
        """World-from-base at ``stamp_seconds`` (world-from-sensor when an extrinsic is given).

        Between two buffered poses it interpolates; outside them it returns the nearest end
        pose when it is within ``tolerance`` seconds (no extrapolation). Raises PoseLookupError
        with the reason otherwise.
        """
        stamp = float(stamp_seconds)
        with self._lock:
            stamps, poses = self._stamps, self._poses
            if not stamps:
                raise PoseLookupError("no pose received yet")
            if stamps[0] < stamp < stamps[-1]:
                i = bisect.bisect_right(stamps, stamp)
                pose = _interpolate(
                    stamps[i - 1], poses[i - 1], stamps[i], poses[i], stamp, self.max_gap
                )
            else:
                end = 0 if stamp <= stamps[0] else -1
                if abs(stamp - stamps[end]) > tolerance:
                    side = "before the oldest" if end == 0 else "after the newest"
                    raise PoseLookupError(
                        f"stamp {stamp:.6f} is {abs(stamp - stamps[end]):.3f} s {side} pose "
                        f"(buffer {stamps[0]:.3f}..{stamps[-1]:.3f}, tolerance {tolerance:g} s)"
                    )
                pose = poses[end].copy()
        if base_from_sensor is not None:
            pose = pose @ extrinsic_matrix(base_from_sensor)
        return pose


def _interpolate(
    t0: float, p0: np.ndarray, t1: float, p1: np.ndarray, t: float, max_gap: float | None
) -> np.ndarray:
    if max_gap is not None and t1 - t0 > max_gap:
        raise PoseLookupError(
            f"stamp {t:.6f} falls in a {t1 - t0:.3f} s gap between poses (max_gap {max_gap:g} s)"
        )
    alpha = (t - t0) / (t1 - t0)
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([p0[:3, :3], p1[:3, :3]])))
    pose = np.eye(4)
    pose[:3, :3] = slerp([alpha]).as_matrix()[0]
    pose[:3, 3] = (1 - alpha) * p0[:3, 3] + alpha * p1[:3, 3]
    return pose
