"""Which voxels leave a bounded map, and when.

The interface is ``EvictionPolicy``: the map (VoxelMap, under its lock) asks it which stored
voxels to drop and removes exactly those, then counts them; a policy reads the store and never
writes it. ``VoxelMap.eviction_policy`` names the class the map builds, with
``(voxel_size, max_voxels, evict_fraction, keep_radius)``; a different policy is one more class
here with the same four methods.

The map's policy, ``OldestSeenFirst``:

- Size: the map never holds more than ``max_voxels``. When a frame brings more new voxels than
  there is room for, the voxels seen longest ago (oldest last-seen stamp; on equal stamps, those
  with fewer observations) are evicted down to (1 - evict_fraction) * max_voxels, so eviction
  happens in batches, not every frame. Voxels the current frame observes are never evicted for
  it; if the frame alone still does not fit, its new voxels farthest from the sensor are dropped.
- Keep radius: whenever the sensor has moved by more than max(voxel_size, keep_radius / 20)
  since the last sweep, voxels whose centres lie farther than ``keep_radius`` from the latest
  sensor position are evicted (a sweep is a pass over the whole map: not every frame).
- Restore: a saved map with more voxels than the bound keeps those eviction would keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from . import voxel_keys
from .voxel_store import VoxelStore


@dataclass
class Room:
    """The answer to ``make_room``: what leaves the map so that the frame's new voxels fit."""

    victims: np.ndarray  # slots of stored voxels to evict before the frame goes in
    new_index: np.ndarray  # indices of the frame's new keys that go in (sorted)
    dropped: int  # new voxels of the frame that do not fit


class EvictionPolicy(Protocol):
    """What a map asks its eviction policy. ``store`` is the map's VoxelStore (slots, keys,
    ``last_seen``, ``observations``, ``centres``), read only; every answer names slots or rows,
    and the map does the removing."""

    def make_room(
        self,
        store: VoxelStore,
        new_keys: np.ndarray,
        observed_slots: np.ndarray,
        origin: np.ndarray,
    ) -> Room:
        """A frame observed ``observed_slots`` and brings ``new_keys`` (not stored yet) from a
        sensor at ``origin``: which stored voxels to evict, and which new keys go in."""

    def sweep(self, store: VoxelStore, origin: np.ndarray) -> np.ndarray:
        """After the frame went in: slots to evict for where the sensor is now (may be empty)."""

    def keep_on_restore(self, observations: np.ndarray, last_seen: np.ndarray) -> np.ndarray:
        """Rows of a saved map (by their observation counts and last-seen stamps) to keep, sorted."""

    def forget_sensor(self) -> None:
        """The map was reset or restored: forget whatever was remembered about the sensor."""


class OldestSeenFirst:
    """The map's policy: evict the voxels seen longest ago, in batches, and those left beyond
    ``keep_radius`` of the sensor (see the module's description)."""

    def __init__(
        self, voxel_size: float, max_voxels: int, evict_fraction: float, keep_radius: float | None
    ):
        self.voxel_size = voxel_size
        self.max_voxels = max_voxels
        self.evict_fraction = evict_fraction
        self.keep_radius = keep_radius
        self._sweep_origin: np.ndarray | None = None

    def make_room(
        self,
        store: VoxelStore,
        new_keys: np.ndarray,
        observed_slots: np.ndarray,
        origin: np.ndarray,
    ) -> Room:
        new_index = np.arange(new_keys.shape[0])
        room = self.max_voxels - store.size
        if new_index.shape[0] <= room:
            return Room(np.empty(0, dtype=np.int64), new_index, 0)
        low_water = int(self.max_voxels * (1.0 - self.evict_fraction))
        target = max(0, min(self.max_voxels - new_index.shape[0], low_water))
        victims = self.victims(store, store.size - target, protected=observed_slots)
        room = self.max_voxels - (store.size - victims.shape[0])
        dropped = 0
        if new_index.shape[0] > room:
            nearest = self.nearest_new(new_keys, origin, room)
            dropped = int(new_index.shape[0] - nearest.shape[0])
            new_index = np.sort(nearest)
        return Room(victims, new_index, dropped)

    def victims(
        self, store: VoxelStore, count: int, protected: np.ndarray | None = None
    ) -> np.ndarray:
        """Slots of the ``count`` voxels seen longest ago; ties on the last-seen stamp go to the
        voxels with fewer observations. ``protected`` slots are never chosen. O(voxels)."""
        slots = store.live_slots()
        if protected is not None and protected.shape[0]:
            mask = np.ones(store.capacity, dtype=bool)
            mask[protected] = False
            slots = slots[mask[slots]]
        count = min(int(count), int(slots.shape[0]))
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        if count == slots.shape[0]:
            return slots.copy()
        seen = store.last_seen[slots]
        threshold = np.partition(seen, count - 1)[count - 1]
        older = slots[seen < threshold]
        tied = slots[seen == threshold]
        needed = count - older.shape[0]
        if needed < tied.shape[0]:
            tied = tied[np.argpartition(store.observations[tied], needed - 1)[:needed]]
        return np.concatenate([older, tied])

    def nearest_new(self, new_keys: np.ndarray, origin: np.ndarray, room: int) -> np.ndarray:
        """Indices of the ``room`` new keys nearest the sensor (a frame larger than the bound)."""
        centres = (voxel_keys.unpack(new_keys) + 0.5) * self.voxel_size
        distance = np.einsum("ij,ij->i", centres - origin, centres - origin)
        return np.argsort(distance, kind="stable")[:room]

    def sweep(self, store: VoxelStore, origin: np.ndarray) -> np.ndarray:
        if self.keep_radius is None:
            return np.empty(0, dtype=np.int64)
        step = max(self.voxel_size, self.keep_radius / 20.0)
        if self._sweep_origin is not None and np.linalg.norm(origin - self._sweep_origin) < step:
            return np.empty(0, dtype=np.int64)
        self._sweep_origin = origin.copy()
        slots = store.live_slots()
        x, y, z = store.centres(slots)
        origin = origin.astype(np.float32)
        far = (x - origin[0]) ** 2 + (y - origin[1]) ** 2 + (
            z - origin[2]
        ) ** 2 > self.keep_radius**2
        return slots[far]

    def keep_on_restore(self, observations: np.ndarray, last_seen: np.ndarray) -> np.ndarray:
        count = last_seen.shape[0]
        if count <= self.max_voxels:
            return np.arange(count)
        order = np.lexsort((-observations.astype(np.int64), -last_seen))
        return np.sort(order[: self.max_voxels])

    def forget_sensor(self) -> None:
        self._sweep_origin = None
