"""Storage of per-voxel attributes: fixed slots in preallocated arrays plus a sorted key index.

Slots never move, so updating a voxel touches only its own rows; a removed voxel frees its slot
for the next insertion (no compaction, no copying of the large feature rows). The index is a
sorted array of keys with the slot of each, kept sorted by merge-inserting a frame's new keys
(O(voxels) for 12 bytes a voxel), and looked up with a binary search.
"""

from __future__ import annotations

import numpy as np

from . import voxel_keys

# Per-voxel arrays other than the feature rows: key, centre, colour mean, colour count,
# observations, last seen, feature count, alive flag, and the index (key + slot).
ATTRIBUTE_BYTES_PER_VOXEL = 8 + 12 + 12 + 4 + 4 + 8 + 4 + 1 + 8 + 8
_ROW_ARRAYS = (
    "key",
    "centre_x",
    "centre_y",
    "centre_z",
    "color",
    "color_count",
    "observations",
    "last_seen",
    "feature",
    "feature_count",
    "alive",
)


class VoxelStore:
    def __init__(
        self,
        voxel_size: float,
        feature_dim: int,
        capacity_limit: int,
        initial_capacity: int = 1 << 16,
    ):
        self.voxel_size = float(voxel_size)
        self.feature_dim = int(feature_dim)
        self.capacity_limit = int(capacity_limit)
        self._initial_capacity = max(1, min(int(initial_capacity), self.capacity_limit))
        self.clear()

    # --- layout ----------------------------------------------------------------------------
    def clear(self) -> None:
        self.index_keys = np.empty(0, dtype=np.int64)  # sorted
        self.index_slots = np.empty(0, dtype=np.int64)  # slot of each key in index_keys
        self._allocate(self._initial_capacity)

    def _allocate(self, capacity: int) -> None:
        self.capacity = capacity
        self.key = np.zeros(capacity, dtype=np.int64)
        # Voxel centres in world metres, one array per axis so projections run on contiguous data.
        self.centre_x = np.zeros(capacity, dtype=np.float32)
        self.centre_y = np.zeros(capacity, dtype=np.float32)
        self.centre_z = np.zeros(capacity, dtype=np.float32)
        self.color = np.zeros((capacity, 3), dtype=np.float32)  # running mean, 0..255
        self.color_count = np.zeros(capacity, dtype=np.uint32)  # coloured observations
        self.observations = np.zeros(capacity, dtype=np.uint32)  # frames/clouds that hit it
        self.last_seen = np.zeros(capacity, dtype=np.float64)
        self.feature = np.zeros((capacity, self.feature_dim), dtype=np.float16)  # running mean
        self.feature_count = np.zeros(capacity, dtype=np.uint32)  # views that gave a feature
        self.alive = np.zeros(capacity, dtype=bool)

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        while capacity < needed:
            capacity *= 2
        capacity = min(capacity, self.capacity_limit)
        if capacity < needed:
            raise RuntimeError(f"store needs {needed} slots beyond its limit {self.capacity_limit}")
        old = {name: getattr(self, name) for name in _ROW_ARRAYS}
        used = self.capacity
        self._allocate(capacity)
        for name, array in old.items():
            getattr(self, name)[:used] = array

    @property
    def size(self) -> int:
        return int(self.index_keys.shape[0])

    def nbytes(self) -> int:
        arrays = [getattr(self, name) for name in _ROW_ARRAYS] + [self.index_keys, self.index_slots]
        return int(sum(a.nbytes for a in arrays))

    # --- index -----------------------------------------------------------------------------
    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 where the key is not stored."""
        if self.size == 0:
            return np.full(keys.shape[0], -1, dtype=np.int64)
        position = np.searchsorted(self.index_keys, keys)
        np.minimum(position, self.size - 1, out=position)
        hit = self.index_keys[position] == keys
        return np.where(hit, self.index_slots[position], -1)

    def insert(self, keys: np.ndarray) -> np.ndarray:
        """Add keys that are not stored yet (distinct); their rows are zeroed. Returns their slots."""
        count = int(keys.shape[0])
        if count == 0:
            return np.empty(0, dtype=np.int64)
        if self.size + count > self.capacity_limit:
            raise RuntimeError("insert beyond the capacity limit; evict first")
        free = np.flatnonzero(~self.alive)
        if free.shape[0] < count:
            self._grow(self.size + count)
            free = np.flatnonzero(~self.alive)
        slots = free[:count]
        self.alive[slots] = True
        self.key[slots] = keys
        centres = (voxel_keys.unpack(keys) + 0.5) * self.voxel_size
        self.centre_x[slots], self.centre_y[slots], self.centre_z[slots] = centres.T
        self.color[slots] = 0
        self.color_count[slots] = 0
        self.observations[slots] = 0
        self.last_seen[slots] = 0
        self.feature[slots] = 0
        self.feature_count[slots] = 0
        order = np.argsort(keys)
        sorted_keys = keys[order]
        position = np.searchsorted(self.index_keys, sorted_keys)
        self.index_keys = np.insert(self.index_keys, position, sorted_keys)
        self.index_slots = np.insert(self.index_slots, position, slots[order])
        return slots

    def remove(self, slots: np.ndarray) -> None:
        if slots.shape[0] == 0:
            return
        self.alive[slots] = False
        keep = np.ones(self.size, dtype=bool)
        keep[np.searchsorted(self.index_keys, self.key[slots])] = False
        self.index_keys = self.index_keys[keep]
        self.index_slots = self.index_slots[keep]

    def centres(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World centres of the given voxels as three float32 columns."""
        return (
            np.take(self.centre_x, slots),
            np.take(self.centre_y, slots),
            np.take(self.centre_z, slots),
        )

    def live_slots(self) -> np.ndarray:
        """Slots of all stored voxels, in key order (so exports and files are deterministic)."""
        return self.index_slots
