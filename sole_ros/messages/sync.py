"""Approximate-time pairing of (depth, colour[, ...]) messages, without ROS.

The one pairing rule of the package: sole_node pairs its subscriptions with it (through
sole_ros.ros.sync), the bag replay pairs recorded messages with it (sole_ros.bag).

The rule: stamps are the truth. A set is built around the oldest queued message (the pivot) with
the oldest message of every other input. When a later message of the pivot's own input has every
other stamp within half its gap to the message before it (the others lie in that frame's slot),
those are its partners: the pivot's own were lost, and the pivot is dropped, so that lost frames
never shift the pairing. Otherwise the set is delivered when all its stamps lie within ``slop``,
once the pivot's input has a message at or past the others' newest stamp (until then a better
partner may still come: at most ``slop``, one frame at a usual ``slop``, of latency). Pivots
that cannot be matched within ``slop`` are dropped, as are messages not newer than the last one
delivered on their input. ``flush()`` ends the streams: what waits is decided as if nothing more
came, oldest first (a recording whose colour lags its depth by more than a frame, within
``slop``, and has no depth image at the colour's stamps, pairs its frames in order).
"""

from __future__ import annotations

import bisect
import collections
import threading
from typing import Any, Callable

from sole_ros.messages.poses import stamp_to_seconds

UNMATCHED = "unmatched"
OUT_OF_ORDER = "out of order"

__all__ = ["ApproximateTimeSync", "UNMATCHED", "OUT_OF_ORDER"]


class ApproximateTimeSync:
    """Groups one message per input whose header stamps lie within ``slop`` seconds.

    ``add(i, msg)`` feeds input ``i``; ``callback(*msgs)`` gets one message per input, in input
    order. Queues hold at most ``queue_size`` messages each (the oldest is dropped). A stamp more
    than ``jump_back`` seconds older than the newest delivered one of its input means time
    restarted (bag loop, simulator reset) and clears everything. ``on_drop(index, reason)``, when
    given, hears of every discarded message: reason UNMATCHED (no partner within slop, pushed out
    of a full queue, or left over at ``flush``) or OUT_OF_ORDER (not newer than the last delivered,
    or before a jump back). Thread-safe: ``add`` may be called from several threads; callbacks run
    one at a time, in stamp order.
    """

    def __init__(
        self,
        num_inputs: int,
        callback: Callable[..., Any] | None = None,
        *,
        slop: float,
        queue_size: int = 10,
        jump_back: float = 1.0,
        on_drop: Callable[[int, str], Any] | None = None,
    ):
        if num_inputs < 2:
            raise ValueError("synchronising needs at least two inputs")
        if not slop >= 0:
            raise ValueError(f"slop must be >= 0 seconds, not {slop}")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.num_inputs = num_inputs
        self.slop = float(slop)
        self.queue_size = int(queue_size)
        self.jump_back = float(jump_back)
        self.dropped = 0  # messages discarded without being delivered (diagnostics)
        self._on_drop = on_drop
        self._callbacks: list[Callable[..., Any]] = [callback] if callback else []
        self._queues: list[list[tuple[float, Any]]] = [[] for _ in range(num_inputs)]
        self._last_delivered: list[float | None] = [None] * num_inputs  # per input
        self._lock = threading.Lock()
        self._ready: collections.deque = collections.deque()
        self._delivering = threading.RLock()  # reentrant: a callback may feed the synchroniser

    def register_callback(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def input(self, index: int) -> Callable[[Any], None]:
        """A one-argument function feeding input ``index`` (for a subscription callback)."""
        self._check_index(index)
        return lambda msg: self.add(index, msg)

    def reset(self) -> None:
        with self._lock:
            for queue in self._queues:
                queue.clear()
            self._last_delivered = [None] * self.num_inputs

    def pending(self) -> list[int]:
        """How many messages each input has queued."""
        with self._lock:
            return [len(q) for q in self._queues]

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input {index} out of range 0..{self.num_inputs - 1}")

    def add(self, index: int, msg, stamp: float | None = None) -> None:
        """Feed ``msg`` to input ``index``; ``stamp`` (seconds) defaults to msg.header.stamp."""
        self._check_index(index)
        if stamp is None:
            stamp = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            queue = self._queues[index]
            last = self._last_delivered[index]
            if last is not None and stamp < last - self.jump_back:
                for i, q in enumerate(self._queues):
                    self._drop(i, OUT_OF_ORDER, len(q))
                    q.clear()
                self._last_delivered = [None] * self.num_inputs
                last = None
            if last is not None and stamp <= last:
                self._drop(index, OUT_OF_ORDER)  # it could only be delivered out of order
                return
            # Sorted by stamp, so a message that overtook an older one still finds its place.
            bisect.insort(queue, (stamp, msg), key=lambda item: item[0])
            if len(queue) > self.queue_size:
                del queue[0]
                self._drop(index, UNMATCHED)
            self._collect(final=False)
        self._deliver()

    def flush(self) -> None:
        """The end of the streams: deliver every set that is complete without waiting for more,
        drop what is left (UNMATCHED)."""
        with self._lock:
            self._collect(final=True)
            for i, queue in enumerate(self._queues):
                self._drop(i, UNMATCHED, len(queue))
                queue.clear()
        self._deliver()

    def _collect(self, final: bool) -> None:
        """Move every set that is decided from the queues to the ready list (lock held)."""
        queues = self._queues
        while all(queues):
            stamps = [q[0][0] for q in queues]
            pivot = min(range(self.num_inputs), key=stamps.__getitem__)
            others = [s for i, s in enumerate(stamps) if i != pivot]
            lo, hi = min(others), max(others)  # every other head is >= the pivot's stamp
            if hi - stamps[pivot] > self.slop:
                del queues[pivot][0]  # nothing now or later is close enough to the pivot
                self._drop(pivot, UNMATCHED)
                continue
            if hi > stamps[pivot]:
                own = queues[pivot]
                if self._later_frame_matches(own, lo, hi):
                    del own[0]  # the others are a later frame's: the pivot's partner was lost
                    self._drop(pivot, UNMATCHED)
                    continue
                if own[-1][0] < hi and not final:
                    break  # a later message of the pivot's input may still be the others' frame: wait
            self._ready.append(tuple(q.pop(0)[1] for q in queues))
            self._last_delivered = stamps

    @staticmethod
    def _later_frame_matches(own: list[tuple[float, Any]], lo: float, hi: float) -> bool:
        """Whether a queued later message of the pivot's input has every other stamp (lo..hi)
        within half its gap to the message before it."""
        for j in range(1, len(own)):
            stamp, gap = own[j][0], own[j][0] - own[j - 1][0]
            if max(hi, stamp) - min(lo, stamp) < gap / 2:
                return True
            if stamp - gap / 2 > hi:
                return False  # this and every later message lie past the others
        return False

    def _drop(self, index: int, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        self.dropped += count
        if self._on_drop is not None:
            for _ in range(count):
                self._on_drop(index, reason)

    def _deliver(self) -> None:
        with self._delivering:
            while True:
                try:
                    messages = self._ready.popleft()
                except IndexError:
                    return
                for callback in self._callbacks:
                    callback(*messages)
