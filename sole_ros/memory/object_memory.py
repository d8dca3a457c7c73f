"""Objects with stable ids across segmentations of an accumulated voxel map.

Every segmentation of the map numbers its instances afresh. ObjectMemory keeps one record per
physical object (its voxels as packed map keys, an optional unit feature, a label and score,
when it was first and last found) and gives each segmentation's detections the ids of the records
they continue, so "the mug" keeps its id while the map grows and is segmented again.

Association of one segmentation's detections, in order:

1. Overlap: IoU of voxel key sets, one detection to one object (Hungarian assignment over the
   pairs with IoU >= overlap_threshold, maximising the summed IoU).
2. Merges: an object left unmatched that a detection covers by more than overlap_threshold of the
   smaller of the two joins that detection's group; a group of two or more objects (the
   detection's match, if any, and those it covers) becomes one object under the oldest id. One
   detection spanning two remembered objects says they were one object split in two. Objects
   mostly inside the detection's match already (nested parts: the mug within "the table with the
   mug on it") are not merged; they stay as they were, as if out of view.
3. Features: detections still unmatched against objects still unmatched whose boxes lie within
   ``neighbourhood`` metres, by cosine of features >= feature_threshold (again one to one): an
   object that moved a little, or whose mask changed shape, keeps its id.
4. Anything else is a new object with a new id. Ids are never reused.

A matched object's voxels become the detection's plus its old voxels the map no longer holds
(keys outside ``present_keys``: evicted by the map's bound or radius), so an object is never
forgotten for being evicted, and one out of view is simply not matched and stays as it was.

Objects leave the memory in three ways: merged into another (above); retired when depth frames
repeatedly see through the space they occupied (``observe_free``; see depth_observation.py for the
geometry); or evicted when the memory holds more than ``max_objects`` (least recently observed
first). Segmentations do not count as evidence that an object is still there: the map keeps a
removed object's voxels until they are evicted, so its instance keeps being segmented; only a
depth frame seeing the surface again (``seen_occupied_keys``) clears votes to retire it.

All public methods take one lock, so a segmentation worker may update while other threads ask.
Objects handed out are copies whose arrays are read-only.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from sole_ros.scene import voxel_keys
from sole_ros.scene.errors import shown

# Keys are three 21-bit fields: every valid key lies in [0, KEY_LIMIT).
KEY_LIMIT = 1 << (3 * voxel_keys.FIELD_BITS)
# A remembered object is voted "gone" by a frame that sees through at least this fraction of its
# voxels (and at least MIN_FREE_VOXELS of them): one stray ray through a voxel proves nothing.
FREE_FRACTION = 0.5
MIN_FREE_VOXELS = 3
# An unmatched object with more than this fraction of its voxels inside the object a detection
# continues is nested in it (a part segmented apart before), not a second object to merge.
NESTED_FRACTION = 0.5
# Feature averaging weighs the stored feature by at most this many observations, so a feature
# keeps following the object (new views, better masks) instead of freezing.
MAX_FEATURE_WEIGHT = 10
FORMAT_NAME = "sole_ros.object_memory"
FORMAT_VERSION = 1
MAX_LABEL_LENGTH = 256
MAX_FEATURE_DIM = 4096
MAX_OBJECTS_LIMIT = 1_000_000
_UNIT_TOLERANCE = 1e-3


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an int64 array, always a new array. Sorting is many times faster
    than np.unique's hashing on packed voxel keys, and input already strictly increasing (keys
    given back to the memory) costs one comparison pass."""
    keys = np.asarray(keys, dtype=np.int64)
    if keys.shape[0] < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return keys.copy()
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]]


def _members(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Mask of ``keys`` found in the sorted unique ``sorted_set`` (binary search, no sorting)."""
    if sorted_set.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    where = np.minimum(np.searchsorted(sorted_set, keys), sorted_set.shape[0] - 1)
    return sorted_set[where] == keys


def as_keys(keys, name: str = "keys") -> np.ndarray:
    """Sorted unique int64 voxel keys; ValueError for non-integers or keys outside the packing."""
    array = np.asarray(keys)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1D array of voxel keys, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer voxel keys, got dtype {array.dtype}")
    if array.dtype == np.uint64 and int(array.max()) >= KEY_LIMIT:
        raise ValueError(f"{name} hold keys outside the packed coordinate range")
    array = sorted_unique(array.astype(np.int64))
    if array[0] < 0 or array[-1] >= KEY_LIMIT:
        raise ValueError(f"{name} hold keys outside the packed coordinate range")
    return array


def keys_from_centres(centres, voxel_size: float) -> np.ndarray:
    """Sorted unique keys of the voxels holding the (N,3) world points (e.g. the map's exported
    voxel centres), in the map's packing."""
    if not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    points = np.asarray(centres, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"centres must be (N,3), got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("centres contain NaN or inf")
    coords = np.floor(points / voxel_size).astype(np.int64)
    if not np.all(voxel_keys.coords_in_range(coords)):
        raise ValueError("centres lie outside the range voxel keys can hold")
    return sorted_unique(voxel_keys.pack(coords))


def detections_from_instances(instances, snapshot, features: bool = True) -> list["Detection"]:
    """Detections of a segmentation of ``snapshot`` (the SceneSnapshot whose coords were given to
    the segmenter): each instance's points -> its voxel keys; with ``features``, the mean of the
    snapshot's fused CLIP features over the instance's voxels that have one (None when none do)."""
    out = []
    coords = np.asarray(snapshot.coords)
    has = (
        None
        if not features or snapshot.features is None
        else np.asarray(snapshot.has_feature, dtype=bool)
    )
    for instance in instances:
        index = np.asarray(instance.point_indices, dtype=np.int64)
        feature = None
        if has is not None:
            rows = index[has[index]]
            if rows.shape[0]:
                total = np.asarray(snapshot.features[rows], dtype=np.float64).sum(axis=0)
                feature = total if np.linalg.norm(total) > 0 else None
        out.append(
            Detection(
                keys_from_centres(coords[index], snapshot.voxel_size),
                feature,
                str(instance.label),
                float(instance.score),
            )
        )
    return out


@dataclass
class Detection:
    """One instance of one segmentation: its voxels as map keys, and what is known about it.
    ``feature``: any embedding of the instance (mask/query embedding, pooled CLIP feature), the
    same kind for every detection given to one memory; it is normalised here."""

    keys: np.ndarray
    feature: np.ndarray | None = None
    label: str = ""
    score: float = 0.0


@dataclass
class MemoryObject:
    """A remembered object. ``keys``: its voxels (sorted unique int64 map keys), including those
    the map has evicted; ``feature``: unit vector averaged over its detections (None until one
    had a feature); ``label``: the latest non-empty label given; ``score``: the latest detection's;
    ``first_seen`` / ``last_seen``: stamps of the segmentations that first and last found it;
    ``observations``: segmentations it was found in; ``free_votes``: depth frames that saw
    through its space since one last saw its surface."""

    id: int
    keys: np.ndarray
    feature: np.ndarray | None
    label: str
    score: float
    first_seen: float
    last_seen: float
    observations: int
    free_votes: int = 0

    def box(self, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (min corner, max corner) of its voxels, world metres."""
        coords = voxel_keys.unpack(self.keys)
        return coords.min(axis=0) * voxel_size, (coords.max(axis=0) + 1) * voxel_size

    def centroid(self, voxel_size: float) -> np.ndarray:
        """Mean of its voxel centres, world metres."""
        return (voxel_keys.unpack(self.keys).mean(axis=0) + 0.5) * voxel_size


@dataclass(frozen=True)
class UpdateReport:
    """What one ``update`` did, beyond the ids it returned."""

    ids: list[int]  # per detection, in the order given
    created: list[int]  # new ids
    matched_by_overlap: list[int]  # ids kept because the voxels overlap
    matched_by_feature: list[int]  # ids kept because the feature agrees nearby
    merged: list[tuple[int, int]]  # (surviving id, absorbed id)
    evicted: list[int]  # ids dropped for the max_objects bound


@dataclass(frozen=True)
class FrameReport:
    """What one ``observe_free`` / ``observe_occupied`` call did."""

    voted: list[int]  # objects mostly seen through (a vote each, retired ones included)
    reset: list[int]  # objects seen occupied: their votes went back to zero
    retired: list[int]  # objects removed by this frame


def _unit(feature, name: str = "feature") -> np.ndarray:
    array = np.asarray(feature)
    if (
        array.ndim != 1
        or array.shape[0] < 1
        or not np.issubdtype(array.dtype, np.number)
        or np.iscomplexobj(array)
    ):
        raise ValueError(
            f"{name} must be a non-empty 1D real vector, got shape {array.shape}, dtype {array.dtype}"
        )
    if array.shape[0] > MAX_FEATURE_DIM:
        raise ValueError(f"{name} has {array.shape[0]} dimensions, more than {MAX_FEATURE_DIM}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        raise ValueError(f"{name} is all zeros (give None for no feature)")
    return (array / norm).astype(np.float32)


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


def _check_fraction(name: str, value, low_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")
    return value


def _check_count(name: str, value, low: int, high: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not low <= value <= high
    ):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def _intersections(left: list[np.ndarray], right: list[np.ndarray]) -> np.ndarray:
    """(len(left), len(right)) counts of shared keys between every pair of key sets (each set
    sorted unique), counted as one sparse product: no loop over voxels or pairs."""
    out_shape = (len(left), len(right))
    if not left or not right:
        return np.zeros(out_shape, dtype=np.int64)
    left_keys = np.concatenate(left)
    right_keys = np.concatenate(right)
    if left_keys.size == 0 or right_keys.size == 0:
        return np.zeros(out_shape, dtype=np.int64)
    vocabulary = sorted_unique(left_keys)
    left_rows = np.repeat(np.arange(len(left)), [k.shape[0] for k in left])
    right_rows = np.repeat(np.arange(len(right)), [k.shape[0] for k in right])
    left_cols = np.searchsorted(vocabulary, left_keys)
    where = np.minimum(np.searchsorted(vocabulary, right_keys), vocabulary.shape[0] - 1)
    shared = vocabulary[where] == right_keys  # right keys that some left set holds
    a = sparse.csr_matrix(
        (np.ones(left_keys.shape[0], dtype=np.int64), (left_rows, left_cols)),
        shape=(len(left), vocabulary.shape[0]),
    )
    b = sparse.csr_matrix(
        (np.ones(int(shared.sum()), dtype=np.int64), (right_rows[shared], where[shared])),
        shape=(len(right), vocabulary.shape[0]),
    )
    return np.asarray((a @ b.T).toarray(), dtype=np.int64)


def _boxes(key_sets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per key set (each non-empty): min and max integer voxel coordinates, (n,3) each."""
    if not key_sets:
        return np.zeros((0, 3), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)
    sizes = np.array([k.shape[0] for k in key_sets])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    coords = voxel_keys.unpack(np.concatenate(key_sets))
    return np.minimum.reduceat(coords, starts, axis=0), np.maximum.reduceat(coords, starts, axis=0)


def _box_gaps(lo_a, hi_a, lo_b, hi_b, voxel_size: float) -> np.ndarray:
    """(n_a, n_b) distance in metres between axis-aligned voxel boxes (0 when they touch/overlap)."""
    gap = np.maximum(
        0,
        np.maximum(
            lo_a[:, None, :] - hi_b[None, :, :] - 1, lo_b[None, :, :] - hi_a[:, None, :] - 1
        ),
    )
    return np.sqrt((gap.astype(np.float64) ** 2).sum(axis=2)) * voxel_size


def _assign(score: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, col) among ``allowed`` maximising the summed score."""
    if not allowed.any():
        return []
    rows = np.flatnonzero(allowed.any(axis=1))
    cols = np.flatnonzero(allowed.any(axis=0))
    sub_allowed = allowed[np.ix_(rows, cols)]
    cost = np.where(sub_allowed, -score[np.ix_(rows, cols)], 0.0)
    r, c = linear_sum_assignment(cost)
    return [(int(rows[i]), int(cols[j])) for i, j in zip(r, c) if sub_allowed[i, j]]


class ObjectMemory:
    """See the module docstring. ``voxel_size``: the map's (keys are its packing);
    ``occupied_fraction``: a depth frame seeing at least this fraction of an object's voxels
    occupied (and not most of them through) resets its votes to retire it."""

    def __init__(
        self,
        voxel_size: float,
        max_objects: int = 500,
        overlap_threshold: float = 0.25,
        feature_threshold: float = 0.85,
        neighbourhood: float = 0.10,
        retire_votes: int = 3,
        occupied_fraction: float = 0.2,
    ):
        if (
            isinstance(voxel_size, bool)
            or not isinstance(voxel_size, (int, float, np.integer, np.floating))
            or not (math.isfinite(voxel_size) and voxel_size > 0)
        ):
            raise ValueError(f"voxel_size must be a positive number of metres, got {voxel_size!r}")
        if (
            isinstance(feature_threshold, bool)
            or not isinstance(feature_threshold, (int, float, np.floating))
            or not -1.0 <= float(feature_threshold) <= 1.0
        ):
            raise ValueError(
                f"feature_threshold must be a cosine in [-1, 1], got {feature_threshold!r}"
            )
        if (
            isinstance(neighbourhood, bool)
            or not isinstance(neighbourhood, (int, float, np.floating))
            or not (math.isfinite(neighbourhood) and neighbourhood >= 0)
        ):
            raise ValueError(
                f"neighbourhood must be a finite distance >= 0 in metres, got {neighbourhood!r}"
            )
        self.voxel_size = float(voxel_size)
        self.max_objects = _check_count("max_objects", max_objects, 1, MAX_OBJECTS_LIMIT)
        self.overlap_threshold = _check_fraction("overlap_threshold", overlap_threshold)
        self.feature_threshold = float(feature_threshold)
        self.neighbourhood = float(neighbourhood)
        self.retire_votes = _check_count("retire_votes", retire_votes, 1, 1_000_000)
        self.occupied_fraction = _check_fraction("occupied_fraction", occupied_fraction)
        self._objects: dict[int, MemoryObject] = {}  # by id, in id order
        self._next_id = 1
        self._feature_dim: int | None = None
        self._counters = {"created": 0, "merged": 0, "retired": 0, "evicted": 0}
        self._lock = threading.RLock()
        self.last_report: UpdateReport | None = None
        self.last_frame: FrameReport | None = None
        self._index = None  # identify()'s index of every key; None after any change

    # --- settings and inspection ----------------------------------------------------------------
    def settings(self) -> dict:
        return {
            "voxel_size": self.voxel_size,
            "max_objects": self.max_objects,
            "overlap_threshold": self.overlap_threshold,
            "feature_threshold": self.feature_threshold,
            "neighbourhood": self.neighbourhood,
            "retire_votes": self.retire_votes,
            "occupied_fraction": self.occupied_fraction,
        }

    def emptied(self) -> "ObjectMemory":
        """A memory with these settings and no objects, whose ids continue after this one's, so
        that an id never names two objects (after a reset or a replaced scene)."""
        with self._lock:
            fresh = ObjectMemory(**self.settings())
            fresh._next_id = self._next_id
            return fresh

    @property
    def feature_dim(self) -> int | None:
        """Width of the features held (None until the first feature arrives)."""
        return self._feature_dim

    def __len__(self) -> int:
        return len(self._objects)

    def objects(self) -> list[MemoryObject]:
        """Copies of every remembered object, in id order."""
        with self._lock:
            return [dataclasses.replace(o) for o in self._objects.values()]

    def get(self, object_id: int) -> MemoryObject | None:
        """A copy of the object with this id, or None (never seen, merged, retired or evicted)."""
        with self._lock:
            obj = self._objects.get(object_id)
            return None if obj is None else dataclasses.replace(obj)

    def all_keys(self) -> np.ndarray:
        """Sorted unique keys of every remembered voxel (for testing them against a depth frame)."""
        with self._lock:
            if not self._objects:
                return np.zeros(0, dtype=np.int64)
            return sorted_unique(np.concatenate([o.keys for o in self._objects.values()]))

    def identify(self, keys) -> int | None:
        """The id of the remembered object that overlaps ``keys`` most, when their IoU reaches
        overlap_threshold; else None. For naming a query's answers after a segmentation's: a
        binary search into an index of every remembered key, built once per change."""
        keys = as_keys(keys)
        with self._lock:
            all_keys, owners, objects, sizes = self._key_index()
            if not objects or keys.shape[0] == 0:
                return None
            low = np.searchsorted(all_keys, keys, "left")
            counts = (
                np.searchsorted(all_keys, keys, "right") - low
            )  # keys may belong to several objects
            total = int(counts.sum())
            if total == 0:
                return None
            rows = np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(total)
            shared = np.bincount(owners[rows], minlength=len(objects))
            iou = shared / np.maximum(sizes + keys.shape[0] - shared, 1)
            best = int(np.argmax(iou))
            return objects[best].id if iou[best] >= self.overlap_threshold else None

    def _key_index(self):
        """(every remembered key sorted, the position of its object, the objects, their sizes);
        rebuilt after a change (the lock is held)."""
        if self._index is None:
            objects = list(self._objects.values())
            sizes = np.array([o.keys.shape[0] for o in objects], dtype=np.int64)
            keys = (
                np.concatenate([o.keys for o in objects])
                if objects
                else np.zeros(0, dtype=np.int64)
            )
            owners = np.repeat(np.arange(len(objects)), sizes)
            order = np.argsort(keys, kind="stable")
            self._index = (keys[order], owners[order], objects, sizes)
        return self._index

    def stats(self) -> dict:
        with self._lock:
            return {
                "objects": len(self._objects),
                **self._counters,
                "voxels": int(sum(o.keys.shape[0] for o in self._objects.values())),
            }

    # --- segmentations ---------------------------------------------------------------------------
    def update(self, detections, stamp: float, present_keys=None) -> list[int]:
        """Associate one segmentation's detections with the remembered objects; returns the id
        given to each detection (see the module docstring; the rest is in ``last_report``).

        ``present_keys``: the keys the map holds now (None: all of a matched object's old voxels
        are assumed to be in the map, so its voxels become the detection's). Invalid input is
        refused whole with ValueError before anything changes."""
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, (int, float, np.integer, np.floating))
            or not math.isfinite(stamp)
        ):
            raise ValueError(f"stamp must be a finite number of seconds, got {stamp!r}")
        stamp = float(stamp)
        detections = list(detections)
        clean = [self._clean_detection(d, i) for i, d in enumerate(detections)]
        present = None if present_keys is None else as_keys(present_keys, "present_keys")
        with self._lock:
            dims = {f.shape[0] for _, f, _, _ in clean if f is not None}
            if self._feature_dim is not None:
                dims.add(self._feature_dim)
            if len(dims) > 1:
                held = (
                    f" (this memory holds {self._feature_dim}-d features)"
                    if self._feature_dim
                    else ""
                )
                raise ValueError(f"detection features have different widths {sorted(dims)}{held}")
            if dims:
                self._feature_dim = dims.pop()
            report = self._associate(clean, stamp, present)
            self._index = None
            self.last_report = report
            return list(report.ids)

    @staticmethod
    def _clean_detection(detection, index: int):
        if not isinstance(detection, Detection):
            raise ValueError(f"detection {index} is a {type(detection).__name__}, not a Detection")
        keys = as_keys(detection.keys, f"detection {index} keys")
        if keys.shape[0] == 0:
            raise ValueError(f"detection {index} has no voxels")
        feature = (
            None
            if detection.feature is None
            else _unit(detection.feature, f"detection {index} feature")
        )
        if not isinstance(detection.label, str) or len(detection.label) > MAX_LABEL_LENGTH:
            raise ValueError(
                f"detection {index} label must be a string of at most {MAX_LABEL_LENGTH} characters"
            )
        score = detection.score
        if (
            isinstance(score, bool)
            or not isinstance(score, (int, float, np.integer, np.floating))
            or not math.isfinite(score)
        ):
            raise ValueError(f"detection {index} score must be a finite number, got {score!r}")
        return keys, feature, detection.label, float(score)

    def _associate(self, clean, stamp: float, present: np.ndarray | None) -> UpdateReport:
        n = len(clean)
        ids: list[int | None] = [None] * n
        merged: list[tuple[int, int]] = []
        by_overlap: list[int] = []
        by_feature: list[int] = []
        objects = list(self._objects.values())
        if n and objects:
            match_of_det, merged, absorbed_objects = self._match_by_overlap(
                [c[0] for c in clean], objects
            )
            for d, o in sorted(match_of_det.items()):
                self._continue(objects[o], clean[d], stamp, present)
                ids[d] = objects[o].id
                by_overlap.append(objects[o].id)
            taken = set(match_of_det.values()) | absorbed_objects
            for d, o in self._match_by_feature(clean, ids, objects, taken):
                self._continue(objects[o], clean[d], stamp, present)
                ids[d] = objects[o].id
                by_feature.append(objects[o].id)
        created = self._create_objects(clean, ids, stamp)
        evicted = self._enforce_bound()
        return UpdateReport([int(i) for i in ids], created, by_overlap, by_feature, merged, evicted)

    def _match_by_overlap(
        self, det_keys: list[np.ndarray], objects: list[MemoryObject]
    ) -> tuple[dict[int, int], list[tuple[int, int]], set[int]]:
        """Steps 1 and 2: detections matched one to one to the objects they overlap, then the
        objects a detection covers merged. Returns (object index per detection, merged
        (survivor id, absorbed id) pairs, absorbed object indices)."""
        obj_keys = [o.keys for o in objects]
        shared = _intersections(det_keys, obj_keys)
        det_size = np.array([k.shape[0] for k in det_keys], dtype=np.int64)
        obj_size = np.array([k.shape[0] for k in obj_keys], dtype=np.int64)
        iou = shared / (det_size[:, None] + obj_size[None, :] - shared)
        pairs = _assign(iou, (shared > 0) & (iou >= self.overlap_threshold))
        match_of_det = {d: o for d, o in pairs}
        covered = shared / np.minimum(det_size[:, None], obj_size[None, :])
        groups = self._covering_groups(covered, {o for _, o in pairs})
        merged, absorbed_objects = self._merge_groups(objects, groups, match_of_det)
        return match_of_det, merged, absorbed_objects

    def _covering_groups(
        self, covered: np.ndarray, matched_objects: set[int]
    ) -> dict[int, list[int]]:
        """Each unmatched object joins the detection covering most of the smaller of the two."""
        groups: dict[int, list[int]] = {}
        for o in range(covered.shape[1]):
            if o in matched_objects:
                continue
            column = covered[:, o]
            d = int(np.argmax(column))
            if column[d] > self.overlap_threshold:
                groups.setdefault(d, []).append(o)
        return groups

    def _merge_groups(
        self,
        objects: list[MemoryObject],
        groups: dict[int, list[int]],
        match_of_det: dict[int, int],
    ) -> tuple[list[tuple[int, int]], set[int]]:
        """Merge each detection's group (with the object it matched) into its oldest member,
        which ``match_of_det`` then names; returns the merged pairs and absorbed indices."""
        merged: list[tuple[int, int]] = []
        absorbed_objects: set[int] = set()
        for d, extra in groups.items():
            if d in match_of_det:
                extra = self._not_nested(objects, extra, objects[match_of_det[d]])
            members = ([match_of_det[d]] if d in match_of_det else []) + extra
            if len(members) < 2:
                continue
            survivor = min(members, key=lambda o: (objects[o].first_seen, objects[o].id))
            for o in members:
                if o != survivor:
                    merged.append((objects[survivor].id, objects[o].id))
                    absorbed_objects.add(o)
            self._merge(objects[survivor], [objects[o] for o in members if o != survivor])
            match_of_det[d] = survivor
        for _, absorbed in merged:
            del self._objects[absorbed]
        self._counters["merged"] += len(merged)
        return merged, absorbed_objects

    def _match_by_feature(
        self, clean, ids: list[int | None], objects: list[MemoryObject], taken: set[int]
    ) -> list[tuple[int, int]]:
        """Step 3: (detection, object index) pairs for the detections still without an object,
        matched one to one by feature among the free objects near their box."""
        free_dets = [d for d in range(len(clean)) if ids[d] is None and clean[d][1] is not None]
        free_objs = [
            o for o in range(len(objects)) if o not in taken and objects[o].feature is not None
        ]
        if not (free_dets and free_objs):
            return []
        det_lo, det_hi = _boxes([clean[d][0] for d in free_dets])
        obj_lo, obj_hi = _boxes([objects[o].keys for o in free_objs])
        near = _box_gaps(det_lo, det_hi, obj_lo, obj_hi, self.voxel_size) <= self.neighbourhood
        detected = np.stack([clean[d][1] for d in free_dets])
        cosine = detected @ np.stack([objects[o].feature for o in free_objs]).T
        allowed = near & (cosine >= self.feature_threshold)
        return [(free_dets[i], free_objs[j]) for i, j in _assign(cosine, allowed)]

    def _create_objects(self, clean, ids: list[int | None], stamp: float) -> list[int]:
        """Step 4: a new object for each detection still without one (its id written to
        ``ids``); returns the new ids."""
        created = []
        for d in range(len(clean)):
            if ids[d] is None:
                keys, feature, label, score = clean[d]
                obj = MemoryObject(
                    self._next_id, _frozen(keys), _frozen(feature), label, score, stamp, stamp, 1
                )
                self._objects[obj.id] = obj
                self._next_id += 1
                ids[d] = obj.id
                created.append(obj.id)
        self._counters["created"] += len(created)
        return created

    @staticmethod
    def _not_nested(
        objects: list[MemoryObject], candidates: list[int], match: MemoryObject
    ) -> list[int]:
        """The candidates that are not mostly inside ``match`` already: an object nested in the
        one a detection continues (the mug in "the table with the mug on it") was segmented apart
        from it before and is left alone when its own mask is missing from one segmentation."""
        if not candidates:
            return candidates
        inside = _intersections([objects[o].keys for o in candidates], [match.keys])[:, 0]
        sizes = np.array([objects[o].keys.shape[0] for o in candidates])
        return [o for o, keep in zip(candidates, inside <= NESTED_FRACTION * sizes) if keep]

    @staticmethod
    def _merge(survivor: MemoryObject, others: list[MemoryObject]) -> None:
        """Fold ``others`` into ``survivor`` (keys united, feature averaged by observations)."""
        group = [survivor, *others]
        survivor.keys = _frozen(sorted_unique(np.concatenate([o.keys for o in group])))
        with_feature = [o for o in group if o.feature is not None]
        if with_feature:
            total = sum(o.feature.astype(np.float64) * o.observations for o in with_feature)
            norm = np.linalg.norm(total)
            survivor.feature = (
                _frozen((total / norm).astype(np.float32)) if norm > 0 else survivor.feature
            )
        if not survivor.label:
            survivor.label = next((o.label for o in others if o.label), "")
        survivor.score = max(o.score for o in group)
        survivor.first_seen = min(o.first_seen for o in group)
        survivor.last_seen = max(o.last_seen for o in group)
        survivor.observations = sum(o.observations for o in group)
        survivor.free_votes = min(o.free_votes for o in group)

    @staticmethod
    def _continue(obj: MemoryObject, detection, stamp: float, present: np.ndarray | None) -> None:
        """The object found again as ``detection``: its voxels become the detection's plus its
        old voxels the map no longer holds; feature averaged, label and score the latest."""
        keys, feature, label, score = detection
        if present is not None:
            kept = obj.keys[~_members(obj.keys, present)]
            keys = sorted_unique(np.concatenate([keys, kept])) if kept.shape[0] else keys
        obj.keys = _frozen(keys)
        if feature is not None:
            if obj.feature is None:
                obj.feature = _frozen(feature)
            else:
                total = (
                    obj.feature.astype(np.float64) * min(obj.observations, MAX_FEATURE_WEIGHT)
                    + feature
                )
                norm = np.linalg.norm(total)
                obj.feature = (
                    _frozen((total / norm).astype(np.float32)) if norm > 0 else _frozen(feature)
                )
        if label:
            obj.label = label
        obj.score = score
        obj.last_seen = max(obj.last_seen, stamp)
        obj.observations += 1

    def _enforce_bound(self) -> list[int]:
        """Drop the least recently observed objects beyond max_objects (fewest observations,
        then oldest id first among equals)."""
        excess = len(self._objects) - self.max_objects
        if excess <= 0:
            return []
        order = sorted(self._objects.values(), key=lambda o: (o.last_seen, o.observations, o.id))
        evicted = [o.id for o in order[:excess]]
        for object_id in evicted:
            del self._objects[object_id]
        self._counters["evicted"] += len(evicted)
        return evicted

    # --- depth frames --------------------------------------------------------------------------
    def observe_free(self, seen_free_keys, seen_occupied_keys=None) -> list[int]:
        """One depth frame's evidence: ``seen_free_keys`` are remembered voxels it saw through,
        ``seen_occupied_keys`` (optional) those it saw a surface at. An object with at least half
        of its voxels (and at least 3) seen through gets a vote and is retired at retire_votes;
        otherwise one with at least occupied_fraction of its voxels seen occupied has its votes
        reset. Seen-through wins: the voxels of an object resting on a table stay next to the
        table's surface after it has gone. Returns the retired ids (details in ``last_frame``)."""
        free = as_keys(seen_free_keys, "seen_free_keys")
        occupied = (
            None
            if seen_occupied_keys is None
            else as_keys(seen_occupied_keys, "seen_occupied_keys")
        )
        with self._lock:
            objects = list(self._objects.values())
            if not objects:
                self.last_frame = FrameReport([], [], [])
                return []
            sizes = np.array([o.keys.shape[0] for o in objects], dtype=np.int64)
            owner = np.repeat(np.arange(len(objects)), sizes)
            keys = np.concatenate([o.keys for o in objects])
            free_count = _members_per_owner(keys, owner, free, len(objects))
            voted_mask = (free_count >= MIN_FREE_VOXELS) & (free_count >= FREE_FRACTION * sizes)
            reset_mask = np.zeros(len(objects), dtype=bool)
            if occupied is not None:
                occupied_count = _members_per_owner(keys, owner, occupied, len(objects))
                reset_mask = (
                    ~voted_mask
                    & (occupied_count >= np.minimum(MIN_FREE_VOXELS, sizes))
                    & (occupied_count >= self.occupied_fraction * sizes)
                )
            voted, reset, retired = [], [], []
            for i in np.flatnonzero(voted_mask):
                obj = objects[i]
                obj.free_votes += 1
                voted.append(obj.id)
                if obj.free_votes >= self.retire_votes:
                    retired.append(obj.id)
                    del self._objects[obj.id]
            for i in np.flatnonzero(reset_mask):
                objects[i].free_votes = 0
                reset.append(objects[i].id)
            self._counters["retired"] += len(retired)
            if retired:
                self._index = None
            self.last_frame = FrameReport(voted, reset, retired)
            return retired

    def observe_occupied(self, seen_occupied_keys) -> list[int]:
        """A depth frame saw a surface at these remembered voxels: objects with at least
        occupied_fraction of their voxels among them have their votes reset. Returns their ids."""
        self.observe_free(np.zeros(0, dtype=np.int64), seen_occupied_keys=seen_occupied_keys)
        return list(self.last_frame.reset)

    # --- persistence ---------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, meta): plain numpy arrays in dtypes the map file holds (int64, float32,
        float64, bool) and a JSON-able dict of settings, counters and labels."""
        with self._lock:
            objects = list(self._objects.values())
            dim = self._feature_dim or 0
            sizes = np.array([o.keys.shape[0] for o in objects], dtype=np.int64)
            features = np.zeros((len(objects), dim), dtype=np.float32)
            has_feature = np.zeros(len(objects), dtype=bool)
            for i, o in enumerate(objects):
                if o.feature is not None:
                    features[i] = o.feature
                    has_feature[i] = True
            arrays = {
                "ids": np.array([o.id for o in objects], dtype=np.int64),
                "key_offsets": np.r_[0, np.cumsum(sizes)].astype(np.int64),
                "keys": np.concatenate([o.keys for o in objects])
                if objects
                else np.zeros(0, dtype=np.int64),
                "features": features,
                "has_feature": has_feature,
                "scores": np.array([o.score for o in objects], dtype=np.float64),
                "first_seen": np.array([o.first_seen for o in objects], dtype=np.float64),
                "last_seen": np.array([o.last_seen for o in objects], dtype=np.float64),
                "observations": np.array([o.observations for o in objects], dtype=np.int64),
                "free_votes": np.array([o.free_votes for o in objects], dtype=np.int64),
            }
            meta = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "settings": self.settings(),
                "next_id": self._next_id,
                "feature_dim": self._feature_dim,
                "counters": dict(self._counters),
                "labels": [o.label for o in objects],
            }
            return arrays, meta

    @classmethod
    def from_arrays(
        cls, arrays: dict, meta: dict, voxel_size: float | None = None
    ) -> "ObjectMemory":
        """The memory ``to_arrays`` described, every field checked; ValueError with the reason
        otherwise. ``voxel_size``: the loading map's, which the memory's must equal."""
        if not isinstance(meta, dict):
            raise ValueError("object memory meta must be a dict")
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"not an object memory (format {shown(meta.get('format'))})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"object memory format version {shown(meta.get('format_version'), 20)} "
                f"is not supported (this reads {FORMAT_VERSION})"
            )
        settings = meta.get("settings")
        if not isinstance(settings, dict) or set(settings) != set(cls(1.0).settings()):
            raise ValueError("object memory settings are missing or unknown")
        try:
            memory = cls(**settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"object memory settings are invalid: {error}") from None
        if voxel_size is not None and memory.voxel_size != float(voxel_size):
            raise ValueError(
                f"object memory voxel_size {memory.voxel_size} does not match the map's {voxel_size}"
            )
        objects = _validate_arrays(arrays, meta, memory)
        memory._objects = {o.id: o for o in objects}
        memory._next_id = int(meta["next_id"])
        memory._feature_dim = meta["feature_dim"]
        memory._counters = {k: int(v) for k, v in meta["counters"].items()}
        return memory


def _members_per_owner(
    keys: np.ndarray, owner: np.ndarray, members: np.ndarray, owners: int
) -> np.ndarray:
    """Per owner: how many of its keys are in the sorted unique ``members``."""
    if members.shape[0] == 0:
        return np.zeros(owners, dtype=np.int64)
    return np.bincount(owner[_members(keys, members)], minlength=owners)


_ARRAY_DTYPES = {
    "ids": np.int64,
    "key_offsets": np.int64,
    "keys": np.int64,
    "features": np.float32,
    "has_feature": np.bool_,
    "scores": np.float64,
    "first_seen": np.float64,
    "last_seen": np.float64,
    "observations": np.int64,
    "free_votes": np.int64,
}


def _validate_arrays(arrays, meta: dict, memory: ObjectMemory) -> list[MemoryObject]:
    """The objects the arrays hold, or ValueError naming the first thing wrong."""
    _check_array_types(arrays)
    n = _object_count(arrays["ids"], memory.max_objects)
    feature_dim = _checked_feature_dim(meta.get("feature_dim"))
    _check_shapes(arrays, n, feature_dim or 0)
    _check_ids(arrays["ids"], meta.get("next_id"))
    _check_key_layout(arrays["keys"], arrays["key_offsets"])
    _check_object_values(arrays, memory.retire_votes)
    _check_features(arrays["features"], arrays["has_feature"], feature_dim)
    labels = _checked_labels(meta.get("labels"), n)
    _check_counters(meta.get("counters"))
    return _objects_from_arrays(arrays, labels)


def _check_array_types(arrays) -> None:
    """Exactly the named arrays, each a numpy array of its dtype."""
    if not isinstance(arrays, dict) or set(arrays) != set(_ARRAY_DTYPES):
        names = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise ValueError(
            f"object memory arrays must be exactly {sorted(_ARRAY_DTYPES)}, got {names}"
        )
    for name, dtype in _ARRAY_DTYPES.items():
        if not isinstance(arrays[name], np.ndarray) or arrays[name].dtype != dtype:
            raise ValueError(
                f"object memory array {name} must be {np.dtype(dtype)}, "
                f"got {getattr(arrays[name], 'dtype', type(arrays[name]).__name__)}"
            )


def _object_count(ids: np.ndarray, max_objects: int) -> int:
    """The number of objects ``ids`` names, within the memory's bound."""
    if ids.ndim != 1:
        raise ValueError(f"object memory ids must be 1D, got shape {ids.shape}")
    n = ids.shape[0]
    if n > max_objects:
        raise ValueError(
            f"object memory holds {n} objects, more than its max_objects {max_objects}"
        )
    return n


def _checked_feature_dim(feature_dim) -> int | None:
    if feature_dim is not None and (
        isinstance(feature_dim, bool)
        or not isinstance(feature_dim, int)
        or not 1 <= feature_dim <= MAX_FEATURE_DIM
    ):
        raise ValueError(
            f"object memory feature_dim must be None or 1..{MAX_FEATURE_DIM}, got {str(feature_dim)[:20]}"
        )
    return feature_dim


def _check_shapes(arrays: dict, n: int, dim: int) -> None:
    """Every array shaped for ``n`` objects with ``dim``-d features; the keys flat."""
    expected = {
        "key_offsets": (n + 1,),
        "features": (n, dim),
        "has_feature": (n,),
        "scores": (n,),
        "first_seen": (n,),
        "last_seen": (n,),
        "observations": (n,),
        "free_votes": (n,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(
                f"object memory array {name} has shape {arrays[name].shape}, expected {shape}"
            )
    keys = arrays["keys"]
    if keys.ndim != 1:
        raise ValueError(f"object memory keys must be 1D, got shape {keys.shape}")


def _check_ids(ids: np.ndarray, next_id) -> None:
    """Ids positive and strictly increasing, ``next_id`` above all of them."""
    n = ids.shape[0]
    if n and (np.any(ids < 1) or np.any(ids[1:] <= ids[:-1])):
        raise ValueError("object memory ids must be positive and strictly increasing")
    if (
        isinstance(next_id, bool)
        or not isinstance(next_id, int)
        or next_id < 1
        or next_id >= 2**62
        or (n and next_id <= int(ids[-1]))
    ):
        raise ValueError(
            f"object memory next_id must be an integer above every id, got {str(next_id)[:20]}"
        )


def _check_key_layout(keys: np.ndarray, offsets: np.ndarray) -> None:
    """Offsets slicing the keys into non-empty runs of strictly increasing packed keys."""
    if offsets[0] != 0 or offsets[-1] != keys.shape[0] or np.any(offsets[1:] <= offsets[:-1]):
        raise ValueError(
            "object memory key_offsets must rise strictly from 0 to the number of keys "
            "(every object has at least one voxel)"
        )
    if keys.shape[0] and (keys.min() < 0 or keys.max() >= KEY_LIMIT):
        raise ValueError("object memory keys lie outside the packed coordinate range")
    if keys.shape[0] > 1:
        rising = keys[1:] > keys[:-1]
        rising[offsets[1:-1] - 1] = True  # the boundary between two objects may fall
        if not rising.all():
            raise ValueError(
                "object memory keys of an object must be strictly increasing (each voxel once)"
            )


def _check_object_values(arrays: dict, retire_votes: int) -> None:
    """Finite numbers, consistent times, at least one observation, votes below retirement."""
    for name in ("features", "scores", "first_seen", "last_seen"):
        if not np.all(np.isfinite(arrays[name])):
            raise ValueError(f"object memory array {name} contains NaN or inf")
    if np.any(arrays["first_seen"] > arrays["last_seen"]):
        raise ValueError("object memory has an object last seen before it was first seen")
    if np.any(arrays["observations"] < 1):
        raise ValueError("object memory observations must be at least 1")
    votes = arrays["free_votes"]
    if np.any(votes < 0) or np.any(votes >= retire_votes):
        raise ValueError(f"object memory free_votes must be in 0..{retire_votes - 1}")


def _check_features(features: np.ndarray, has_feature: np.ndarray, feature_dim) -> None:
    """Unit rows where ``has_feature``, zero rows elsewhere."""
    if has_feature.any() and feature_dim is None:
        raise ValueError("object memory has features but no feature_dim")
    norms = (
        np.linalg.norm(features.astype(np.float64), axis=1)
        if feature_dim
        else np.zeros(has_feature.shape[0])
    )
    if np.any(np.abs(norms[has_feature] - 1.0) > _UNIT_TOLERANCE) or np.any(
        norms[~has_feature] != 0
    ):
        raise ValueError(
            "object memory features must be unit vectors where has_feature, zero elsewhere"
        )


def _checked_labels(labels, n: int) -> list[str]:
    if (
        not isinstance(labels, list)
        or len(labels) != n
        or not all(isinstance(s, str) and len(s) <= MAX_LABEL_LENGTH for s in labels)
    ):
        raise ValueError(
            f"object memory labels must be a list of {n} strings of at most {MAX_LABEL_LENGTH} characters"
        )
    return labels


def _check_counters(counters) -> None:
    if (
        not isinstance(counters, dict)
        or set(counters) != {"created", "merged", "retired", "evicted"}
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62
            for v in counters.values()
        )
    ):
        raise ValueError(
            "object memory counters must be created, merged, retired and evicted, each an integer >= 0"
        )


def _objects_from_arrays(arrays: dict, labels: list[str]) -> list[MemoryObject]:
    """The checked arrays as objects, each holding its own copies."""
    ids, offsets, keys = arrays["ids"], arrays["key_offsets"], arrays["keys"]
    features, has_feature = arrays["features"], arrays["has_feature"]
    objects = []
    for i in range(ids.shape[0]):
        start, end = int(offsets[i]), int(offsets[i + 1])
        objects.append(
            MemoryObject(
                int(ids[i]),
                _frozen(keys[start:end].copy()),
                _frozen(features[i].copy()) if has_feature[i] else None,
                labels[i],
                float(arrays["scores"][i]),
                float(arrays["first_seen"][i]),
                float(arrays["last_seen"][i]),
                int(arrays["observations"][i]),
                int(arrays["free_votes"][i]),
            )
        )
    return objects
