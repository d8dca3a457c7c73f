"""Keyframe selection: which camera frames are worth the cost of dense CLIP features."""

from __future__ import annotations

import math

import numpy as np

from .validation import check_pose, check_stamp


class KeyframeSelector:
    """A frame is a keyframe when at least `min_interval` seconds passed since the last keyframe
    and the camera moved at least `min_translation` metres or turned at least `min_rotation_deg`
    degrees since then, or when `max_interval` seconds passed (to refresh a still camera's view),
    if set. The first frame, and a frame whose stamp goes back in time (a replay restarted), are
    keyframes."""

    def __init__(
        self,
        min_translation: float = 0.10,
        min_rotation_deg: float = 10.0,
        min_interval: float = 0.0,
        max_interval: float | None = None,
    ):
        for name, value in (
            ("min_translation", min_translation),
            ("min_rotation_deg", min_rotation_deg),
            ("min_interval", min_interval),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if max_interval is not None and not (math.isfinite(max_interval) and max_interval > 0):
            raise ValueError(f"max_interval must be positive or None, got {max_interval}")
        self.min_translation = float(min_translation)
        self.min_rotation = math.radians(min_rotation_deg)
        self.min_interval = float(min_interval)
        self.max_interval = max_interval
        self.reset()

    def reset(self) -> None:
        self._last_pose: np.ndarray | None = None
        self._last_stamp = 0.0

    def is_keyframe(self, pose, stamp: float) -> bool:
        """Whether this frame would be a keyframe (does not remember it)."""
        pose = check_pose(pose)
        stamp = check_stamp(stamp)
        if self._last_pose is None:
            return True
        elapsed = stamp - self._last_stamp
        if elapsed < 0:
            return True
        if elapsed < self.min_interval:
            return False
        if self.max_interval is not None and elapsed >= self.max_interval:
            return True
        translation = float(np.linalg.norm(pose[:3, 3] - self._last_pose[:3, 3]))
        relative = self._last_pose[:3, :3].T @ pose[:3, :3]
        angle = math.acos(max(-1.0, min(1.0, (float(np.trace(relative)) - 1.0) / 2.0)))
        return translation >= self.min_translation or angle >= self.min_rotation

    def accept(self, pose, stamp: float) -> bool:
        """is_keyframe, and remember the frame as the last keyframe when it is one."""
        if not self.is_keyframe(pose, stamp):
            return False
        self._last_pose = check_pose(pose)
        self._last_stamp = check_stamp(stamp)
        return True
