"""Frames waiting to be fused, taken off the DDS readers at once and fused by one worker thread.

Fusing a 640x480 RGB-D frame takes longer than a 30 Hz camera's frame period on a CPU. Done in
the subscription callback, the frames that arrive meanwhile pile up in the DDS reader's history,
whose oldest are overwritten unseen: lost with no trace. Here the callbacks only queue the
frame; when more than ``max_pending`` wait, the oldest is dropped and reported, so every loss is
counted under its reason.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable

from sole_ros.ros.thread_priority import lower_thread_priority


class IngestQueue:
    """``put(item)`` from any thread; ``handle(item)`` runs on the worker, one item at a time, in order.

    ``on_overflow(item)`` hears of each item dropped because the queue was full (the oldest go).
    """

    def __init__(
        self,
        handle: Callable[[Any], None],
        max_pending: int,
        on_overflow: Callable[[Any], None],
        name: str = "sole-ingest",
    ):
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self._handle = handle
        self._on_overflow = on_overflow
        self._max_pending = max_pending
        self._items: collections.deque = collections.deque()
        self._ready = threading.Condition()
        self._stopped = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> None:
        overflow = []
        with self._ready:
            if self._stopped:
                return
            self._items.append(item)
            while len(self._items) > self._max_pending:
                overflow.append(self._items.popleft())
            self._ready.notify()
        for old in overflow:
            self._on_overflow(old)

    def pending(self) -> int:
        with self._ready:
            return len(self._items) + (1 if self._busy else 0)

    def _run(self) -> None:
        lower_thread_priority()
        while True:
            with self._ready:
                while not self._items and not self._stopped:
                    self._ready.wait()
                if self._stopped:
                    return
                item = self._items.popleft()
                self._busy = True
            try:
                self._handle(item)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or being fused (tests, shutdown); False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._items and not self._busy, timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the frame being fused, drop the rest (not counted: the node is going down)."""
        with self._ready:
            self._stopped = True
            self._items.clear()
            self._ready.notify_all()
        self._thread.join(timeout=timeout)


__all__ = ["IngestQueue"]
