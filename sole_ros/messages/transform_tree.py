"""A tf tree without tf2: time-indexed transforms between named frames, from /tf and /tf_static.

Used by the bag replay (tf2_ros is not needed). Every child frame has one parent, as in tf2; a
lookup walks both frames up to their nearest common ancestor and composes the links, each
interpolated at the stamp (static links hold at every time).
"""

from __future__ import annotations

import math

import numpy as np

from sole_ros.messages.poses import (
    PoseBuffer,
    PoseLookupError,
    matrix_from_transform,
    stamp_to_seconds,
)

__all__ = ["TransformTree", "PoseLookupError", "frame_name"]

_MAX_DEPTH = 64  # deeper than any real robot; stops a malformed tree with a cycle


def frame_name(name: str) -> str:
    return name[1:] if name.startswith("/") else name  # tf2 ignores a leading slash


class TransformTree:
    def __init__(self, max_age: float = math.inf):
        # An offline replay keeps every transform (a bag's whole history); a live user can bound it.
        self._max_age = 1e12 if math.isinf(max_age) else float(max_age)
        self._parent: dict[str, str] = {}
        self._dynamic: dict[str, PoseBuffer] = {}
        self._static: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._parent)

    @property
    def frames(self) -> set[str]:
        return set(self._parent) | set(self._parent.values())

    def add(
        self, parent: str, child: str, stamp: float, parent_from_child, static: bool = False
    ) -> None:
        parent, child = frame_name(parent), frame_name(child)
        if not parent or not child or parent == child:
            raise ValueError(
                f"a transform needs two different frame names, not {parent!r} -> {child!r}"
            )
        # tf2 lets a child change parent; the newest parent wins and the old history goes.
        if self._parent.get(child) not in (None, parent):
            self._dynamic.pop(child, None)
            self._static.pop(child, None)
        self._parent[child] = parent
        if static:
            self._static[child] = np.asarray(parent_from_child, dtype=np.float64)
            self._dynamic.pop(child, None)
        else:
            buffer = self._dynamic.setdefault(
                child, PoseBuffer(max_age=self._max_age, max_size=10_000_000)
            )
            buffer.add(stamp, parent_from_child)

    def add_message(self, msg, static: bool = False) -> int:
        """Add every TransformStamped of a tf2_msgs/TFMessage; returns how many were added."""
        for t in msg.transforms:
            self.add(
                t.header.frame_id,
                t.child_frame_id,
                stamp_to_seconds(t.header.stamp),
                matrix_from_transform(t.transform),
                static=static,
            )
        return len(msg.transforms)

    def root_of(self, frame: str) -> str:
        """The topmost ancestor of ``frame`` (the fixed frame when none is named)."""
        return self._ancestors(frame_name(frame))[-1]

    def _ancestors(self, frame: str) -> list[str]:
        """``frame``, its parent, ... up to its root."""
        chain = [frame]
        while chain[-1] in self._parent:
            parent = self._parent[chain[-1]]
            if parent in chain or len(chain) > _MAX_DEPTH:
                raise PoseLookupError(f"the tf tree has a cycle through {parent!r}")
            chain.append(parent)
        return chain

    def _up_to(self, frame: str, ancestor: str, stamp: float, tolerance: float) -> np.ndarray:
        """ancestor_from_frame, each link looked up at ``stamp``."""
        matrix = np.eye(4)
        while frame != ancestor:
            parent = self._parent[frame]
            link = self._static.get(frame)
            if link is None:
                try:
                    link = self._dynamic[frame].lookup(stamp, tolerance)
                except PoseLookupError as error:
                    raise PoseLookupError(f"{parent} -> {frame}: {error}") from None
            matrix = link @ matrix
            frame = parent
        return matrix

    def lookup(self, target: str, source: str, stamp: float, tolerance: float = 0.05) -> np.ndarray:
        """target_from_source (4x4) at ``stamp``; PoseLookupError with the reason otherwise."""
        target, source = frame_name(target), frame_name(source)
        if target == source:
            return np.eye(4)
        for name in (target, source):
            if name not in self.frames:
                known = ", ".join(sorted(self.frames)) or "none"
                raise PoseLookupError(f"frame {name!r} is not in the tf tree (frames: {known})")
        above_source = self._ancestors(source)
        common = next((f for f in self._ancestors(target) if f in above_source), None)
        if common is None:
            raise PoseLookupError(
                f"frames {target!r} and {source!r} are not connected in the tf tree"
            )
        common_from_source = self._up_to(source, common, stamp, tolerance)
        common_from_target = self._up_to(target, common, stamp, tolerance)
        return np.linalg.inv(common_from_target) @ common_from_source
