"""Which voxels leave a bounded map, and when: the size bound and the keep radius.

- Size: the map never holds more than ``max_voxels``. When a frame brings more new voxels than
  there is room for, the voxels seen longest ago (oldest last-seen stamp; on equal stamps, those
  with fewer observations) are evicted down to (1 - evict_fraction) * max_voxels, so eviction
  happens in batches, not every frame. Voxels the current frame observes are never evicted for
  it; if the frame alone still does not fit, its new voxels farthest from the sensor are dropped.
- Keep radius: whenever the sensor has moved by more than max(voxel_size, keep_radius / 20)
  since the last sweep, voxels whose centres lie farther than ``keep_radius`` from the latest
  sensor position are evicted (a sweep is a pass over the whole map: not every frame).
- Restore: a saved map with more voxels than the bound keeps those eviction would keep.

The policy decides; the caller (VoxelMap, under its lock) holds the store and counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import voxel_keys


@dataclass
class RoomMade:
    new_index: np.ndarray  # indices of the frame's new keys that go in (sorted)
    evicted: int           # voxels evicted to make room
    dropped: int           # new voxels of the frame that did not fit


class EvictionPolicy:
    def __init__(self, voxel_size: float, max_voxels: int, evict_fraction: float, keep_radius: float | None):
        self.voxel_size = voxel_size
        self.max_voxels = max_voxels
        self.evict_fraction = evict_fraction
        self.keep_radius = keep_radius
        self._sweep_origin: np.ndarray | None = None

    def make_room(self, store, new_keys: np.ndarray, observed_slots: np.ndarray, origin: np.ndarray) -> RoomMade:
        """Evict from ``store`` so that as many of ``new_keys`` as possible fit; which go in."""
        new_index = np.arange(new_keys.shape[0])
        room = self.max_voxels - store.size
        if new_index.shape[0] <= room:
            return RoomMade(new_index, 0, 0)
        low_water = int(self.max_voxels * (1.0 - self.evict_fraction))
        target = max(0, min(self.max_voxels - new_index.shape[0], low_water))
        victims = store.least_recently_seen(store.size - target, protected=observed_slots)
        store.remove(victims)
        room = self.max_voxels - store.size
        dropped = 0
        if new_index.shape[0] > room:
            centres = (voxel_keys.unpack(new_keys) + 0.5) * self.voxel_size
            distance = np.einsum("ij,ij->i", centres - origin, centres - origin)
            nearest = np.argsort(distance, kind="stable")[:room]
            dropped = int(new_index.shape[0] - nearest.shape[0])
            new_index = np.sort(nearest)
        return RoomMade(new_index, int(victims.shape[0]), dropped)

    def sweep(self, store, origin: np.ndarray) -> int:
        """Evict voxels beyond keep_radius of the sensor once it has moved enough; how many."""
        if self.keep_radius is None:
            return 0
        step = max(self.voxel_size, self.keep_radius / 20.0)
        if self._sweep_origin is not None and np.linalg.norm(origin - self._sweep_origin) < step:
            return 0
        self._sweep_origin = origin.copy()
        slots = store.live_slots()
        x, y, z = store.centres(slots)
        origin = origin.astype(np.float32)
        far = (x - origin[0]) ** 2 + (y - origin[1]) ** 2 + (z - origin[2]) ** 2 > self.keep_radius ** 2
        victims = slots[far]
        store.remove(victims)
        return int(victims.shape[0])

    def keep_on_restore(self, observations: np.ndarray, last_seen: np.ndarray) -> np.ndarray:
        """Rows of a saved map to keep (sorted): all of them, or the most recently seen."""
        count = last_seen.shape[0]
        if count <= self.max_voxels:
            return np.arange(count)
        order = np.lexsort((-observations.astype(np.int64), -last_seen))
        return np.sort(order[: self.max_voxels])

    def forget_sensor(self) -> None:
        """After a reset or restore the next frame sweeps, wherever the sensor is."""
        self._sweep_origin = None
