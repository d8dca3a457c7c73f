"""Approximate-time pairing of (depth, colour[, camera info...]) messages.

message_filters is not on PyPI, so the package carries its own small synchroniser; on a full
ROS 2 install ``subscribe_synchronized`` can use message_filters instead.

Policy (ours): the set is built around the oldest queued message (the pivot) with the oldest
message of every other input. A set is delivered when all its stamps lie within ``slop`` and the
pivot's own next message would not make a tighter set; when that next message has not arrived
yet and the stamps differ, the set waits for it (at most one frame of latency), so that a late
or dropped frame on one stream never shifts the pairing by a frame. Pivots that cannot be
matched within ``slop`` are dropped, as are messages not newer than the last one delivered on their input.
"""
from __future__ import annotations

import bisect
import collections
import threading
from typing import Any, Callable, Sequence

from sole_ros.ros.transforms import stamp_to_seconds

UNMATCHED = "unmatched"
OUT_OF_ORDER = "out of order"

__all__ = ["ApproximateTimeSync", "UNMATCHED", "OUT_OF_ORDER", "SynchronizedSubscription", "subscribe_synchronized",
           "message_filters_available"]


class ApproximateTimeSync:
    """Groups one message per input whose header stamps lie within ``slop`` seconds.

    ``add(i, msg)`` feeds input ``i``; ``callback(*msgs)`` gets one message per input, in input
    order. Queues hold at most ``queue_size`` messages each (the oldest is dropped). A stamp more
    than ``jump_back`` seconds older than the newest delivered one means time restarted (bag
    loop, simulator reset) and clears everything. ``on_drop(index, reason)``, when given, hears of
    every discarded message: reason UNMATCHED (no partner within slop, or pushed out of a full
    queue) or OUT_OF_ORDER (not newer than the last delivered, or before a jump back). Thread-safe:
    ``add`` may be called from several threads; callbacks run one at a time, in stamp order.
    """

    def __init__(self, num_inputs: int, callback: Callable[..., Any] | None = None, *,
                 slop: float, queue_size: int = 10, jump_back: float = 1.0,
                 on_drop: Callable[[int, str], Any] | None = None):
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
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input {index} out of range 0..{self.num_inputs - 1}")
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

    def add(self, index: int, msg, stamp: float | None = None) -> None:
        """Feed ``msg`` to input ``index``; ``stamp`` (seconds) defaults to msg.header.stamp."""
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input {index} out of range 0..{self.num_inputs - 1}")
        if stamp is None:
            stamp = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            queue = self._queues[index]
            latest = max((t for t in self._last_delivered if t is not None), default=None)
            if latest is not None and stamp < latest - self.jump_back:
                for i, q in enumerate(self._queues):
                    self._drop(i, OUT_OF_ORDER, len(q))
                    q.clear()
                self._last_delivered = [None] * self.num_inputs
            last = self._last_delivered[index]
            if last is not None and stamp <= last:
                self._drop(index, OUT_OF_ORDER)  # it could only be delivered out of order
                return
            # Sorted by stamp, so a message that overtook an older one still finds its place.
            bisect.insort(queue, (stamp, msg), key=lambda item: item[0])
            if len(queue) > self.queue_size:
                del queue[0]
                self._drop(index, UNMATCHED)
            self._collect()
        self._deliver()

    def _collect(self) -> None:
        """Move every set that is decided from the queues to the ready list (lock held)."""
        queues = self._queues
        while all(queues):
            stamps = [q[0][0] for q in queues]
            pivot = min(range(self.num_inputs), key=stamps.__getitem__)
            t0 = stamps[pivot]
            others = [s for i, s in enumerate(stamps) if i != pivot]
            spread = max(others) - t0  # every other head is >= t0
            if spread > self.slop:
                del queues[pivot][0]  # nothing now or later is close enough to the pivot
                self._drop(pivot, UNMATCHED)
                continue
            if spread > 0:
                if len(queues[pivot]) < 2:
                    break  # the pivot's next message might match the others better: wait
                t1 = queues[pivot][1][0]
                if max(t1, max(others)) - min(t1, min(others)) < spread:
                    del queues[pivot][0]
                    self._drop(pivot, UNMATCHED)
                    continue
            self._ready.append(tuple(q.pop(0)[1] for q in queues))
            self._last_delivered = stamps

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


def lost_events(on_lost: Callable[[Any, int], Any] | None, index):
    """Subscription event callbacks calling ``on_lost(index, count)`` when the middleware reports
    messages lost on the way (None when not asked)."""
    if on_lost is None:
        return None
    from rclpy.event_handler import SubscriptionEventCallbacks

    return SubscriptionEventCallbacks(message_lost=lambda info: on_lost(index, info.total_count_change))


def message_filters_available() -> bool:
    try:
        import message_filters  # noqa: F401
    except ImportError:
        return False
    return True


class SynchronizedSubscription:
    """Subscriptions plus the synchroniser joining them; keep it referenced while in use."""

    def __init__(self, backend: str, subscriptions: list, synchronizer):
        self.backend = backend  # "builtin" or "message_filters"
        self.subscriptions = subscriptions
        self.synchronizer = synchronizer

    def destroy(self, node) -> None:
        for sub in self.subscriptions:
            node.destroy_subscription(getattr(sub, "sub", sub))  # message_filters wraps it
        self.subscriptions = []


def subscribe_synchronized(node, inputs: Sequence[tuple[type, str]], callback: Callable[..., Any], *,
                           slop: float, queue_size: int = 10, qos=10, callback_group=None,
                           backend: str = "auto", on_receive: Callable[[int, Any], Any] | None = None,
                           on_drop: Callable[[int, str], Any] | None = None,
                           on_lost: Callable[[int, int], Any] | None = None) -> SynchronizedSubscription:
    """Subscribe ``node`` to ``inputs`` [(msg_type, topic), ...] and call ``callback(*msgs)``.

    backend: "builtin" (ApproximateTimeSync), "message_filters" (ImportError when absent) or
    "auto" (message_filters when importable, else builtin). ``callback_group`` is given to
    every subscription, or is a sequence of one per input (the builtin synchroniser is
    thread-safe, so inputs may run side by side).
    ``qos`` is one profile for all inputs or a sequence of one per input. ``on_receive(i, msg)``
    hears of every message as it arrives, ``on_drop(i, reason)`` of every one the builtin
    synchroniser discards (message_filters does not report its drops), ``on_lost(i, count)`` of
    messages the middleware reports lost on the way (builtin backend).
    """
    qos_per_input = list(qos) if isinstance(qos, (list, tuple)) else [qos] * len(inputs)
    groups = list(callback_group) if isinstance(callback_group, (list, tuple)) else [callback_group] * len(inputs)
    if len(qos_per_input) != len(inputs) or len(groups) != len(inputs):
        raise ValueError(f"{len(qos_per_input)} QoS profiles and {len(groups)} callback groups for "
                         f"{len(inputs)} inputs")
    if backend not in ("auto", "builtin", "message_filters"):
        raise ValueError(f"backend must be auto, builtin or message_filters, not {backend!r}")
    if backend == "auto":
        backend = "message_filters" if message_filters_available() else "builtin"
    if backend == "message_filters":
        import message_filters  # ImportError names the missing module, which is the reason

        subscribers = [message_filters.Subscriber(node, msg_type, topic, qos_profile=profile,
                                                  callback_group=group)
                       for (msg_type, topic), profile, group in zip(inputs, qos_per_input, groups)]
        if on_receive is not None:
            for i, subscriber in enumerate(subscribers):
                subscriber.registerCallback(lambda msg, i=i: on_receive(i, msg))
        synchronizer = message_filters.ApproximateTimeSynchronizer(subscribers, queue_size, slop)
        synchronizer.registerCallback(callback)
        return SynchronizedSubscription(backend, subscribers, synchronizer)
    synchronizer = ApproximateTimeSync(len(inputs), callback, slop=slop, queue_size=queue_size, on_drop=on_drop)

    def feeder(i: int):
        def feed(msg):
            if on_receive is not None:
                on_receive(i, msg)
            synchronizer.add(i, msg)
        return feed

    subscriptions = [node.create_subscription(msg_type, topic, feeder(i), profile, callback_group=groups[i],
                                              event_callbacks=lost_events(on_lost, i))
                     for i, ((msg_type, topic), profile) in enumerate(zip(inputs, qos_per_input))]
    return SynchronizedSubscription(backend, subscriptions, synchronizer)
