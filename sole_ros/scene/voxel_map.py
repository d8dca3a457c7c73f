"""A bounded, world-frame sparse voxel map fed by depth clouds and RGB-D frames.

Per voxel: mean colour, observation count, last-seen stamp and (optionally) a fused CLIP feature
stored as float16. Every public method is safe to call from several threads: a single lock guards
the store, held only for the merge of an already-reduced frame, for copies (export, save) and for
feature fusion; validation, back-projection and per-frame reduction run outside it.

Bounds: points outside the box [region_min, region_max] (world frame, metres), farther than
max_range or (with keep_radius set) keep_radius from the sensor never enter the map. Which voxels
leave it, and when, is the eviction policy (``VoxelMap.eviction_policy``, eviction_policy.py):
the oldest-seen beyond max_voxels, and those beyond keep_radius of the sensor. Storage grows
geometrically up to max_voxels slots and no further, so memory is bounded by
max_voxels * bytes_per_voxel (stats()).

Averaging: colours in color_averaging.py, CLIP features of a view in feature_fusion.py. Files:
saved_map.py checks what a map file holds (map_file.py is the container).

Versioning: `version` increases by one on every change of content (integration that touched a
voxel, eviction, crop, reset, restore) and never otherwise, so it can key caches of results
computed from export().
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from . import map_file, voxel_keys
from .camera import RayCache
from .color_averaging import first_colors, fold_colors, frame_mean_colors
from .errors import InvalidInput, MapFileError, shown
from .eviction_policy import EvictionPolicy, OldestSeenFirst
from .feature_fusion import fuse_view_features
from .feature_fusion import (
    sample_feature_grid as sample_feature_grid,
)  # the map's sampler, also named from here
from .free_space import seen_through
from .rendering import render_voxel_depth
from .saved_map import ARRAY_SPECS, LOAD_CAPACITY_FACTOR, SavedMap
from .validation import (
    check_features,
    check_intrinsics,
    check_points,
    check_pose,
    check_stamp,
    color_image_rgb,
    depth_in_metres,
    point_colors_rgb,
)
from .voxel_store import ATTRIBUTE_BYTES_PER_VOXEL, VoxelStore

# Voxels whose colour was never observed export as mid-grey.
UNKNOWN_COLOR = 0.5


@dataclass(frozen=True)
class SceneSnapshot:
    """An immutable copy of the map for the model (arrays are read-only), in voxel-key order."""

    coords: np.ndarray  # (M,3) float32 voxel centres, world frame, metres
    colors: np.ndarray  # (M,3) float32 RGB in 0..1
    features: np.ndarray | None  # (M,D) float32, L2-normalised; zero rows = no feature yet
    has_feature: np.ndarray | None  # (M,) bool, which rows of features are real
    observations: np.ndarray  # (M,) uint32, frames/clouds that observed each voxel
    version: int
    stamp: float  # latest stamp integrated (0 for an empty map)
    voxel_size: float

    def __len__(self) -> int:
        return int(self.coords.shape[0])


@dataclass(frozen=True)
class IntegrationSummary:
    """What one integrate_* call did. Points are counted before voxelisation."""

    points_in: int
    points_used: int
    dropped_invalid: int  # NaN / inf / zero depth or coordinates
    dropped_out_of_region: int  # outside the region box, max_range or keep_radius
    voxels_updated: int
    voxels_added: int
    voxels_dropped_capacity: int  # new voxels of this frame that did not fit (see eviction policy)
    voxels_evicted: int
    voxels_featured: int  # voxels that received a CLIP feature from this frame
    version: int


@dataclass
class _FrameVoxels:
    """One frame reduced to its distinct voxels."""

    keys: np.ndarray  # (U,) int64
    color: np.ndarray | None  # (U,3) float32 mean colour, 0..255
    points_used: int


@dataclass
class _Counters:
    frames: int = 0
    points: int = 0
    dropped_invalid: int = 0
    dropped_out_of_region: int = 0
    evicted_capacity: int = 0
    evicted_region: int = 0
    dropped_capacity: int = 0
    featured_views: int = 0
    cropped: int = 0
    cleared_free: int = 0


class VoxelMap:
    # Which voxels leave the map, and when: built with (voxel_size, max_voxels, evict_fraction,
    # keep_radius); see eviction_policy.py.
    eviction_policy: type[EvictionPolicy] = OldestSeenFirst

    def __init__(
        self,
        voxel_size: float = 0.02,
        max_voxels: int = 500_000,
        region_min=None,
        region_max=None,
        keep_radius: float | None = None,
        max_range: float | None = None,
        feature_dim: int = 0,
        evict_fraction: float = 0.1,
        feature_depth_tolerance: float | None = None,
    ):
        if not (math.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        if int(max_voxels) < 1:
            raise ValueError(f"max_voxels must be at least 1, got {max_voxels}")
        if not 0.0 <= evict_fraction < 1.0:
            raise ValueError(f"evict_fraction must be in [0, 1), got {evict_fraction}")
        if int(feature_dim) < 0:
            raise ValueError(f"feature_dim must be >= 0, got {shown(feature_dim)}")
        for name, value in (
            ("keep_radius", keep_radius),
            ("max_range", max_range),
            ("feature_depth_tolerance", feature_depth_tolerance),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive or None, got {value}")
        if (region_min is None) != (region_max is None):
            raise ValueError("give both region_min and region_max, or neither")
        if region_min is not None:
            region_min = np.asarray(region_min, dtype=np.float64).reshape(3)
            region_max = np.asarray(region_max, dtype=np.float64).reshape(3)
            if not (
                np.all(np.isfinite(region_min))
                and np.all(np.isfinite(region_max))
                and np.all(region_min < region_max)
            ):
                raise ValueError(
                    f"region must satisfy min < max elementwise, got {region_min}, {region_max}"
                )
        self.voxel_size = float(voxel_size)
        self.max_voxels = int(max_voxels)
        self.region_min = region_min
        self.region_max = region_max
        self.keep_radius = keep_radius
        self.max_range = max_range
        self.feature_dim = int(feature_dim)
        self.evict_fraction = float(evict_fraction)
        self.feature_depth_tolerance = (
            float(feature_depth_tolerance) if feature_depth_tolerance else 2.0 * self.voxel_size
        )
        self._lock = threading.RLock()
        self._rays = RayCache()
        self._store = VoxelStore(self.voxel_size, self.feature_dim, self.max_voxels)
        self._version = 0
        self._stamp = 0.0
        self._counters = _Counters()
        self._eviction = self.eviction_policy(
            self.voxel_size, self.max_voxels, self.evict_fraction, keep_radius
        )
        self._snapshot: SceneSnapshot | None = None

    # --- observable state ------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._version

    @property
    def num_voxels(self) -> int:
        return self._store.size

    @property
    def stamp(self) -> float:
        """The newest integrated stamp (seconds; 0 for an empty map)."""
        return self._stamp

    def __len__(self) -> int:
        return self.num_voxels

    @property
    def bytes_per_voxel(self) -> int:
        return ATTRIBUTE_BYTES_PER_VOXEL + 2 * self.feature_dim

    def settings(self) -> dict:
        return {
            "voxel_size": self.voxel_size,
            "max_voxels": self.max_voxels,
            "region_min": None if self.region_min is None else self.region_min.tolist(),
            "region_max": None if self.region_max is None else self.region_max.tolist(),
            "keep_radius": self.keep_radius,
            "max_range": self.max_range,
            "feature_dim": self.feature_dim,
            "evict_fraction": self.evict_fraction,
            "feature_depth_tolerance": self.feature_depth_tolerance,
        }

    def stats(self) -> dict:
        with self._lock:
            store, c = self._store, self._counters
            live = store.live_slots()
            return {
                "voxels": store.size,
                "max_voxels": self.max_voxels,
                "capacity": store.capacity,
                "memory_bytes": store.nbytes(),
                "memory_bound_bytes": self.max_voxels * self.bytes_per_voxel,
                "voxels_with_features": int(np.count_nonzero(store.feature_count[live]))
                if self.feature_dim
                else 0,
                "version": self._version,
                "stamp": self._stamp,
                "frames_integrated": c.frames,
                "points_integrated": c.points,
                "points_dropped_invalid": c.dropped_invalid,
                "points_dropped_out_of_region": c.dropped_out_of_region,
                "voxels_evicted_capacity": c.evicted_capacity,
                "voxels_evicted_region": c.evicted_region,
                "voxels_dropped_capacity": c.dropped_capacity,
                "voxels_cropped": c.cropped,
                "voxels_cleared_free": c.cleared_free,
                "feature_views": c.featured_views,
            }

    # --- ingest ----------------------------------------------------------------------------
    def integrate_points(self, points, pose, colors=None, stamp: float = 0.0) -> IntegrationSummary:
        """Add a point cloud given in the sensor frame; `pose` is sensor-to-world (4x4).
        Colours: (N,3)/(N,4) uint8 or (N,) uint32 packed 0xAARRGGBB. Non-finite points and points
        exactly at the sensor origin (a common 'no return' marker) are dropped."""
        pose = check_pose(pose)
        stamp = check_stamp(stamp)
        points = check_points(points)
        rgb = None if colors is None else point_colors_rgb(colors, points.shape[0])
        total = points.shape[0]
        with np.errstate(invalid="ignore", over="ignore"):
            points = points.astype(np.float32, copy=False)
            squared_range = np.einsum("ij,ij->i", points, points)
        valid = np.isfinite(squared_range) & (squared_range > 0)
        in_range = valid.copy()
        limit = self._range_limit()
        if limit is not None:
            in_range &= squared_range <= limit * limit
        kept = np.flatnonzero(in_range)
        columns = [np.ascontiguousarray(points[kept, axis]) for axis in range(3)]
        frame = self._reduce(*columns, None if rgb is None else np.take(rgb, kept, axis=0), pose)
        return self._commit(
            frame,
            stamp,
            pose,
            total_points=total,
            dropped_invalid=int(total - np.count_nonzero(valid)),
        )

    def integrate_rgbd(
        self,
        depth,
        K,
        pose,
        color=None,
        stamp: float = 0.0,
        features=None,
        color_encoding: str = "rgb8",
        depth_scale: float = 0.001,
        pixel_stride: int = 1,
        depth_encoding: str | None = None,
    ) -> IntegrationSummary:
        """Add a depth image (float32 metres, or uint16 scaled by depth_scale) seen with pinhole
        intrinsics K from `pose` (camera-to-world, optical frame: z forward, x right, y down),
        with an optional aligned colour image and an optional dense feature grid (h,w,D) covering
        the whole image (see DenseClipFeatures). NaN, inf and zero depths are dropped.
        color_encoding: rgb8, bgr8, rgba8, bgra8 or mono8; depth_encoding (optional): the ROS
        encoding the depth came with (32FC1, 64FC1, 16UC1, mono16), checked against its dtype.

        pixel_stride > 1 uses every n-th pixel of every n-th row (about n*n times less work). A
        voxel spans fx * voxel_size / depth pixels (5 at 2 m for fx = 525, 0.02 m), so stride 2
        still samples every voxel of a frontal surface up to about 5 m; colours average fewer
        pixels and thin or grazing structures may lose voxels."""
        if (
            isinstance(pixel_stride, bool)
            or not isinstance(pixel_stride, (int, np.integer))
            or pixel_stride < 1
        ):
            raise InvalidInput(f"pixel_stride must be a positive integer, got {pixel_stride!r}")
        depth_m = depth_in_metres(depth, depth_scale, depth_encoding)
        height, width = depth_m.shape
        K = check_intrinsics(K, width, height)
        pose = check_pose(pose)
        stamp = check_stamp(stamp)
        rgb = None if color is None else color_image_rgb(color, color_encoding, (height, width))
        if features is not None:
            features = check_features(features, self.feature_dim)
        if pixel_stride > 1:
            # Pixel (u', v') of the strided image is pixel (n u', n v') of the full one.
            depth_m = depth_m[::pixel_stride, ::pixel_stride]
            rgb = None if rgb is None else rgb[::pixel_stride, ::pixel_stride]
            K = K.copy()
            K[:2] /= pixel_stride
            depth_m = np.ascontiguousarray(depth_m)
        rays = self._rays.get(K, depth_m.shape[1], depth_m.shape[0])
        flat = depth_m.reshape(-1)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(flat) & (flat > 0)
            in_range = valid.copy()
            limit = self._range_limit()
            if limit is not None:
                in_range &= flat * rays.length <= limit
        pixels = np.flatnonzero(in_range)
        z = flat[pixels]
        x = rays.x[pixels] * z
        y = rays.y[pixels] * z
        frame_rgb = None if rgb is None else np.take(rgb.reshape(-1, 3), pixels, axis=0)
        frame = self._reduce(x, y, z, frame_rgb, pose)
        total = flat.shape[0]
        n_valid = int(np.count_nonzero(valid))
        return self._commit(
            frame,
            stamp,
            pose,
            total_points=total,
            dropped_invalid=total - n_valid,
            feature_frame=None
            if features is None
            else (features, K, depth_m, pixel_stride, (width, height)),
        )

    def _range_limit(self) -> float | None:
        limits = [v for v in (self.max_range, self.keep_radius) if v is not None]
        return min(limits) if limits else None

    def _reduce(
        self, x: np.ndarray, y: np.ndarray, z: np.ndarray, rgb: np.ndarray | None, pose: np.ndarray
    ) -> _FrameVoxels:
        """Sensor-frame points (three float32 columns) -> the frame's distinct voxel keys and mean
        colours. Runs without the lock; column-wise numpy keeps every pass contiguous."""
        scale = 1.0 / self.voxel_size
        rotation = (pose[:3, :3] * scale).astype(np.float32)
        translation = (pose[:3, 3] * scale).astype(np.float32)
        # Voxel-unit world coordinates g = (R p + t) / voxel_size, one axis at a time, in float32
        # (float64 costs a third of the frame time). Points within about 1e-5 voxel of a voxel
        # boundary may therefore fall on either side of it, which no use of the map can tell.
        grid = [
            x * rotation[axis, 0]
            + y * rotation[axis, 1]
            + z * rotation[axis, 2]
            + translation[axis]
            for axis in range(3)
        ]
        low = np.full(3, voxel_keys.COORD_MIN, dtype=np.float64)
        high = np.full(3, voxel_keys.COORD_MAX + 1, dtype=np.float64)
        if self.region_min is not None:
            low = np.maximum(low, self.region_min * scale)
            high = np.minimum(high, self.region_max * scale)
        inside = None
        for axis in range(3):
            column = grid[axis]
            if column.shape[0] and (column.min() < low[axis] or column.max() >= high[axis]):
                within = (column >= low[axis]) & (column < high[axis])
                inside = within if inside is None else inside & within
        if inside is not None:
            index = np.flatnonzero(inside)
            grid = [column[index] for column in grid]
            rgb = None if rgb is None else np.take(rgb, index, axis=0)
        n = grid[0].shape[0]
        if n == 0:
            return _FrameVoxels(np.empty(0, np.int64), None, 0)
        keys = voxel_keys.pack_columns(*(np.floor(column).astype(np.int64) for column in grid))
        # Neighbouring pixels mostly share a voxel: collapse runs of equal keys first (cheap and
        # sequential), then group the runs.
        run_start = np.empty(n, dtype=bool)
        run_start[0] = True
        np.not_equal(keys[1:], keys[:-1], out=run_start[1:])
        starts = np.flatnonzero(run_start)
        distinct, run_group = voxel_keys.group(keys[starts])
        mean_color = None
        if rgb is not None:
            mean_color = frame_mean_colors(rgb, starts, run_group, distinct.shape[0])
        return _FrameVoxels(distinct, mean_color, n)

    def _commit(
        self,
        frame: _FrameVoxels,
        stamp: float,
        pose: np.ndarray,
        total_points: int,
        dropped_invalid: int,
        feature_frame=None,
    ) -> IntegrationSummary:
        origin = pose[:3, 3]
        with self._lock:
            store = self._store
            slots = store.lookup(frame.keys)
            hit = slots >= 0
            existing = slots[hit]
            new_index = np.flatnonzero(~hit)
            room = self._eviction.make_room(store, frame.keys[new_index], existing, origin)
            store.remove(room.victims)
            new_index = new_index[room.new_index]
            evicted, dropped_capacity = int(room.victims.shape[0]), room.dropped
            if existing.shape[0]:
                store.observations[existing] += 1
                # Stamps may arrive out of order (bag replays): last-seen only moves forward.
                store.last_seen[existing] = np.maximum(store.last_seen[existing], stamp)
                if frame.color is not None:
                    fold_colors(store, existing, frame.color[hit])
            added = store.insert(frame.keys[new_index])
            if added.shape[0]:
                store.observations[added] = 1
                store.last_seen[added] = stamp
                if frame.color is not None:
                    first_colors(store, added, frame.color[new_index])
            changed = bool(existing.shape[0] or added.shape[0] or evicted)
            far = self._eviction.sweep(store, origin)
            store.remove(far)
            swept = int(far.shape[0])
            featured = 0
            if feature_frame is not None:
                featured = self._fuse_features(*feature_frame, pose)
            changed = changed or swept > 0 or featured > 0
            if changed:
                self._version += 1
                self._snapshot = None
            if frame.points_used:
                self._stamp = max(self._stamp, stamp)
            c = self._counters
            c.frames += 1
            c.points += frame.points_used
            c.dropped_invalid += dropped_invalid
            c.dropped_out_of_region += total_points - dropped_invalid - frame.points_used
            c.evicted_capacity += evicted
            c.evicted_region += swept
            c.dropped_capacity += dropped_capacity
            c.featured_views += int(featured > 0)
            return IntegrationSummary(
                points_in=total_points,
                points_used=frame.points_used,
                dropped_invalid=dropped_invalid,
                dropped_out_of_region=total_points - dropped_invalid - frame.points_used,
                voxels_updated=int(existing.shape[0]),
                voxels_added=int(added.shape[0]),
                voxels_dropped_capacity=dropped_capacity,
                voxels_evicted=evicted + swept,
                voxels_featured=featured,
                version=self._version,
            )

    def _fuse_features(
        self,
        features: torch.Tensor,
        K: np.ndarray,
        depth_m: np.ndarray,
        stride: int,
        image_size: tuple[int, int],
        pose: np.ndarray,
    ) -> int:
        """Average this view's dense features into the voxels it sees (lock held); see
        feature_fusion.py for which voxels a view gives a feature to."""
        return fuse_view_features(
            self._store,
            features,
            K,
            depth_m,
            stride,
            image_size,
            pose,
            self.feature_depth_tolerance,
        )

    # --- export ----------------------------------------------------------------------------
    def export(self) -> SceneSnapshot:
        """A read-only snapshot for the model. The lock is held only to copy the raw rows; the
        same snapshot object is returned again while the version is unchanged."""
        with self._lock:
            if self._snapshot is not None and self._snapshot.version == self._version:
                return self._snapshot
            store = self._store
            slots = store.live_slots()
            coords = np.stack(store.centres(slots), axis=1)
            color = store.color[slots]
            color_count = store.color_count[slots]
            observations = store.observations[slots]
            feature = store.feature[slots] if self.feature_dim else None
            feature_count = store.feature_count[slots] if self.feature_dim else None
            version, stamp = self._version, self._stamp
        colors = np.where(
            color_count[:, None] > 0, color / np.float32(255.0), np.float32(UNKNOWN_COLOR)
        )
        colors = colors.astype(np.float32)
        features = has_feature = None
        if feature is not None:
            features = torch.nn.functional.normalize(
                torch.from_numpy(feature).float(), dim=1
            ).numpy()
            has_feature = feature_count > 0
        for array in (coords, colors, features, has_feature, observations):
            if array is not None:
                array.setflags(write=False)
        snapshot = SceneSnapshot(
            coords=coords,
            colors=colors,
            features=features,
            has_feature=has_feature,
            observations=observations,
            version=version,
            stamp=stamp,
            voxel_size=self.voxel_size,
        )
        with self._lock:
            if self._version == version:
                self._snapshot = snapshot
        return snapshot

    def render_depth(self, K, pose, width: int, height: int) -> np.ndarray:
        """Depth image (float32 metres, NaN where no voxel) of the map seen from `pose`, each voxel
        drawn as a square of its projected size at its centre's depth."""
        K = check_intrinsics(K, width, height)
        pose = check_pose(pose)
        snapshot = self.export()
        return render_voxel_depth(
            snapshot.coords, self.voxel_size, K, pose, int(width), int(height)
        )

    # --- editing ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every voxel and counter; the version still increases."""
        with self._lock:
            self._store.clear()
            self._counters = _Counters()
            self._eviction.forget_sensor()
            self._stamp = 0.0
            self._version += 1
            self._snapshot = None

    def crop(self, box_min, box_max) -> int:
        """Keep only voxels whose centres lie in [box_min, box_max]; returns how many were removed."""
        low = np.asarray(box_min, dtype=np.float64).reshape(3)
        high = np.asarray(box_max, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)):
            raise InvalidInput(
                f"crop box must be finite with min <= max, got {low.tolist()}, {high.tolist()}"
            )
        with self._lock:
            slots = self._store.live_slots()
            centres = np.stack(self._store.centres(slots), axis=1)
            outside = ~np.all((centres >= low) & (centres <= high), axis=1)
            removed = self._remove(slots[outside])
            self._counters.cropped += removed
            return removed

    def clear_seen_through(
        self,
        depth,
        K,
        pose,
        tolerance: float | None = None,
        depth_scale: float = 0.001,
        depth_encoding: str | None = None,
    ) -> int:
        """Remove the voxels this depth frame saw through: in view, under a valid reading, and more
        than ``tolerance`` metres (default 2.5 voxel sizes) in front of it, so nothing is there any
        more (an object taken away, a person who walked off). Voxels behind the measured surface,
        out of view or under pixels without a reading stay. Returns how many were removed; the
        version moves on only when some were. Costs one projection of every stored voxel."""
        depth_m = depth_in_metres(depth, depth_scale, depth_encoding)
        height, width = depth_m.shape
        K = check_intrinsics(K, width, height)
        pose = check_pose(pose)
        if tolerance is None:
            tolerance = 2.5 * self.voxel_size
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, (int, float))
            or not (math.isfinite(tolerance) and tolerance >= 0)
        ):
            raise InvalidInput(
                f"tolerance must be a finite number of metres >= 0, got {tolerance!r}"
            )
        with self._lock:
            slots = self._store.live_slots()
            centres = np.stack(self._store.centres(slots), axis=1)
            removed = self._remove(slots[seen_through(centres, depth_m, K, pose, float(tolerance))])
            self._counters.cleared_free += removed
            return removed

    def _remove(self, slots: np.ndarray) -> int:
        """Drop these voxels (the lock is held); the version moves on only when there were some."""
        self._store.remove(slots)
        if slots.shape[0]:
            self._version += 1
            self._snapshot = None
        return int(slots.shape[0])

    # --- persistence -----------------------------------------------------------------------
    def save(
        self, path, extra_arrays: dict | None = None, extra_header: dict | None = None
    ) -> None:
        """Write the map to `path` atomically: a crash leaves either the old file or the new one.
        ``extra_arrays`` (names outside the map's own) and ``extra_header`` travel with it, for
        what belongs with the map (the object memory); SavedMap hands them back unchecked."""
        with self._lock:
            arrays = self._raw_arrays()
            header = {
                "settings": self.settings(),
                "version": self._version,
                "stamp": self._stamp,
                "voxels": self._store.size,
            }
        clash = set(extra_arrays or ()) & set(arrays) or set(extra_header or ()) & set(header)
        if clash:
            raise ValueError(f"extra entries {sorted(clash)} would replace the map's own")
        map_file.write(path, {**header, **(extra_header or {})}, {**arrays, **(extra_arrays or {})})

    @classmethod
    def load(cls, path, max_bytes: int | None = None) -> "VoxelMap":
        """A new map with the settings and content of a file written by save()."""
        saved = SavedMap.read(path, _check_settings, max_bytes=max_bytes)
        voxel_map = cls(**saved.settings)
        voxel_map._restore_arrays(saved)
        voxel_map._version = saved.version
        return voxel_map

    def file_size_limit(self) -> int:
        """The largest map file this map accepts: LOAD_CAPACITY_FACTOR x max_voxels voxels of its
        feature size (a file may hold more voxels than the bound; the most recent are kept)."""
        bytes_per_voxel = sum(
            np.dtype(dtype).itemsize * int(np.prod(trailing(self.feature_dim), dtype=np.int64))
            for dtype, trailing in ARRAY_SPECS.values()
        )
        return map_file.MAX_HEADER_BYTES + LOAD_CAPACITY_FACTOR * self.max_voxels * bytes_per_voxel

    def read_saved(self, path) -> "SavedMap":
        """Read and validate a saved map for ``restore_saved`` without touching this map (and
        without its lock): MapFileError unless it fits this map's voxel and feature size."""
        saved = SavedMap.read(path, _check_settings, max_bytes=self.file_size_limit())
        settings = saved.settings
        if settings["voxel_size"] != self.voxel_size or settings["feature_dim"] != self.feature_dim:
            raise MapFileError(
                f"{path}: voxel_size {settings['voxel_size']} / feature_dim {settings['feature_dim']} "
                f"do not match this map's {self.voxel_size} / {self.feature_dim}"
            )
        return saved

    def restore_saved(self, saved: "SavedMap") -> None:
        """Replace this map's content with a validated saved map (from ``read_saved``). The
        version moves past both this map's and the file's, so caches see a change."""
        with self._lock:
            self._restore_arrays(saved)
            self._version = max(self._version, saved.version) + 1

    def restore(self, path) -> None:
        """``restore_saved(read_saved(path))``: replace the content with a saved one."""
        self.restore_saved(self.read_saved(path))

    def _raw_arrays(self) -> dict[str, np.ndarray]:
        store = self._store
        slots = store.live_slots()
        return {
            "keys": store.index_keys.copy(),
            "color": store.color[slots],
            "color_count": store.color_count[slots],
            "observations": store.observations[slots],
            "last_seen": store.last_seen[slots],
            "feature": store.feature[slots],
            "feature_count": store.feature_count[slots],
        }

    def _restore_arrays(self, saved: "SavedMap") -> None:
        arrays = saved.arrays
        with self._lock:
            store = self._store
            store.clear()
            keys = arrays["keys"]
            keep = self._eviction.keep_on_restore(arrays["observations"], arrays["last_seen"])
            slots = store.insert(keys[keep])
            for name in (
                "color",
                "color_count",
                "observations",
                "last_seen",
                "feature",
                "feature_count",
            ):
                getattr(store, name)[slots] = arrays[name][keep]
            self._counters = _Counters()
            self._counters.evicted_capacity = int(keys.shape[0] - keep.shape[0])
            self._stamp = saved.stamp
            self._eviction.forget_sensor()
            self._snapshot = None


def _check_settings(settings: dict) -> None:
    """A saved map's settings are valid when a map can be made with them."""
    VoxelMap(**{**settings, "max_voxels": 1})
