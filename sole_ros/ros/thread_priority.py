"""Fusing frames yields the CPU to the middleware: starved of CPU, DDS receive threads
acknowledge too late, and a reliable writer with a short history (KEEP_LAST 5 is common) then
overwrites samples before they are resent.

Segmentation keeps the default priority on purpose: a query whose answer would be older than
query.max_staleness waits for it, so a starved segmentation makes such queries wait longer
(measured with bench/bench_query_latency.py: p99 from 6.5 s to 53 s)."""

from __future__ import annotations

import os
import threading

BACKGROUND_NICENESS = 10


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> None:
    """Lower the calling thread's priority, and that of the torch/OpenMP threads it starts after
    this (Linux threads inherit it); elsewhere, or when not allowed, nothing changes."""
    try:
        os.setpriority(
            os.PRIO_PROCESS, threading.get_native_id(), niceness
        )  # Linux: this thread only
    except (AttributeError, OSError):
        pass
