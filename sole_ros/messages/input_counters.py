"""Per-input counts of messages received, fused and dropped (by reason), for node and bag alike.

A sensor stream that fuses nothing must say why: each input (points, depth, colour, camera info,
pose) counts what arrived, what reached the map, and every drop under one of the reasons below.
The node publishes the counts in /diagnostics and warns when an input stalls; the bag replay
prints them in its summary.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

NO_POSE = "no pose at the stamp"
NO_CAMERA_INFO = "no camera info"
NO_COLOUR_PAIR = "no colour pair"
INVALID = "invalid message"
TOO_OLD = "too old"
LOST = "lost in transport"
IMPLAUSIBLE_STAMP = "implausible stamp"
REJECTED = "rejected by the map"
REASONS = (
    NO_POSE,
    NO_CAMERA_INFO,
    NO_COLOUR_PAIR,
    INVALID,
    TOO_OLD,
    IMPLAUSIBLE_STAMP,
    REJECTED,
    LOST,
)


@dataclass
class InputCount:
    received: int = 0
    fused: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)
    unfused_since: float | None = None  # monotonic time of the first message received since then
    last_reason: str = ""  # the newest drop's reason and detail

    def describe(self) -> str:
        text = f"{self.received} received, {self.fused} fused"
        if self.dropped:
            text += ", dropped: " + ", ".join(
                f"{n} {reason}" for reason, n in self.dropped.most_common()
            )
        return text


class InputCounters:
    """Thread-safe counters keyed by input name; inputs appear as they are first counted."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._inputs: dict[str, InputCount] = {}

    def _get(self, name: str) -> InputCount:
        return self._inputs.setdefault(name, InputCount())

    def received(self, name: str, n: int = 1) -> None:
        with self._lock:
            count = self._get(name)
            count.received += n
            if count.unfused_since is None:
                count.unfused_since = self._clock()

    def fused(self, name: str, n: int = 1) -> None:
        with self._lock:
            count = self._get(name)
            count.fused += n
            count.unfused_since = None

    def dropped(self, name: str, reason: str, detail: str = "", n: int = 1) -> int:
        """``n`` messages of ``name`` dropped for ``reason`` (LOST: never received, so not in
        ``received``); returns how many have been dropped for that reason so far."""
        if reason not in REASONS:
            raise ValueError(f"unknown drop reason {reason!r}; one of: {', '.join(REASONS)}")
        with self._lock:
            count = self._get(name)
            count.dropped[reason] += n
            count.last_reason = f"{reason}: {detail}" if detail else reason
            return count.dropped[reason]

    def snapshot(self) -> dict[str, InputCount]:
        """A copy of every input's counts (safe to read while counting goes on)."""
        with self._lock:
            return {
                name: InputCount(
                    c.received,
                    c.fused,
                    collections.Counter(c.dropped),
                    c.unfused_since,
                    c.last_reason,
                )
                for name, c in self._inputs.items()
            }

    def stalled(self, name: str, after: float) -> str | None:
        """Why ``name`` has received messages for ``after`` seconds without fusing any; else None."""
        with self._lock:
            count = self._inputs.get(name)
            if (
                count is None
                or count.unfused_since is None
                or self._clock() - count.unfused_since < after
            ):
                return None
            return count.last_reason or "received but not yet fused"

    def describe(self) -> str:
        """One line: every input's counts."""
        return "; ".join(
            f"{name}: {count.describe()}" for name, count in sorted(self.snapshot().items())
        )

    def key_values(self) -> list[tuple[str, str]]:
        """(key, value) rows for a diagnostics status: received, fused, and each reason that dropped any."""
        rows = []
        for name, count in sorted(self.snapshot().items()):
            rows += [(f"{name} received", str(count.received)), (f"{name} fused", str(count.fused))]
            rows += [
                (f"{name} dropped: {reason}", str(count.dropped[reason]))
                for reason in REASONS
                if count.dropped[reason]
            ]
        return rows


__all__ = [
    "InputCounters",
    "InputCount",
    "REASONS",
    "NO_POSE",
    "NO_CAMERA_INFO",
    "NO_COLOUR_PAIR",
    "INVALID",
    "TOO_OLD",
    "IMPLAUSIBLE_STAMP",
    "REJECTED",
    "LOST",
]
