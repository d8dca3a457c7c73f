"""One training/evaluation scene in memory, whatever file layout it came from.

Ground-truth instances follow the reference convention, which the released MCA/MEA target files
rely on for their row order: instance ids in ascending order, leaving out points with no instance
(-1) and instances of the "stuff" labels (wall, floor).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_INSTANCE = -1


@dataclass
class SceneSample:
    """points [N,3] metres; colors [N,3] RGB in 0..1; semantic [N] label ids; instance [N] ids
    (-1: none). Optional: normals [N,3], point CLIP features [N,D] (L2-normalised, zero rows where
    ``clip_valid`` is False), per-instance captions / entity phrases (keyed by instance id) and
    precomputed association targets ([K, D] in ``instance_ids`` order)."""

    name: str
    points: np.ndarray
    colors: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    normals: np.ndarray | None = None
    clip_features: np.ndarray | None = None
    clip_valid: np.ndarray | None = None
    captions: dict[int, str] = field(default_factory=dict)
    entity_phrases: dict[int, tuple[str, ...]] = field(default_factory=dict)
    mca_targets: np.ndarray | None = None  # released caption embeddings, one row per instance
    mea_targets: np.ndarray | None = None  # released entity guides, one row per instance
    ignored_labels: tuple[int, ...] = ()  # labels whose instances are not targets (wall, floor)
    class_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.points)
        self.points = np.asarray(self.points, dtype=np.float32).reshape(n, 3)
        self.colors = np.asarray(self.colors, dtype=np.float32).reshape(n, 3)
        self.semantic = np.asarray(self.semantic, dtype=np.int64).reshape(n)
        self.instance = np.asarray(self.instance, dtype=np.int64).reshape(n)
        if self.clip_features is not None and self.clip_valid is None:
            self.clip_valid = np.ones(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def instance_ids(self) -> np.ndarray:
        return instance_order(self.semantic, self.instance, self.ignored_labels)

    def instance_labels(self) -> np.ndarray:
        """The (first point's) label of every target instance, in ``instance_ids`` order."""
        ids = self.instance_ids
        first = np.array([np.argmax(self.instance == i) for i in ids], dtype=np.int64)
        return self.semantic[first] if len(ids) else np.zeros(0, np.int64)

    def instance_masks(self) -> np.ndarray:
        """Boolean [K, N] point masks of the target instances."""
        return self.instance[None, :] == self.instance_ids[:, None]

    def subset(self, keep: np.ndarray) -> "SceneSample":
        """The same scene restricted to the points ``keep`` (a boolean mask or indices); instances
        that vanish entirely drop their captions and precomputed rows."""
        keep = np.asarray(keep)
        before = self.instance_ids
        out = SceneSample(
            self.name,
            self.points[keep],
            self.colors[keep],
            self.semantic[keep],
            self.instance[keep],
            None if self.normals is None else self.normals[keep],
            None if self.clip_features is None else self.clip_features[keep],
            None if self.clip_valid is None else self.clip_valid[keep],
            dict(self.captions),
            dict(self.entity_phrases),
            None,
            None,
            self.ignored_labels,
            dict(self.class_names),
        )
        after = out.instance_ids
        rows = np.searchsorted(before, after)
        if self.mca_targets is not None:
            out.mca_targets = self.mca_targets[rows]
        if self.mea_targets is not None:
            out.mea_targets = self.mea_targets[rows]
        return out


def instance_order(semantic: np.ndarray, instance: np.ndarray, ignored_labels=()) -> np.ndarray:
    """Target instance ids: ascending, without -1 and without instances whose label is ignored."""
    has = instance != NO_INSTANCE
    ids = np.unique(instance[has])
    if len(ignored_labels) and len(ids):
        # an instance's label is that of its first point (instances are single-label in ScanNet)
        first = np.array([np.argmax(instance == i) for i in ids])
        ids = ids[~np.isin(semantic[first], np.asarray(ignored_labels))]
    return ids.astype(np.int64)
