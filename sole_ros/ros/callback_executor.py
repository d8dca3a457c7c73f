"""An rclpy executor that runs callbacks on a fixed pool of threads and takes the next ready
callback only once a thread is free.

rclpy's MultiThreadedExecutor (up to 9.x) hands every ready callback to its pool at once and keeps
offering the ones still queued there: while all its threads are busy (queries waiting for a
segmentation, say) its spin thread loops at full speed holding the GIL, and the segmentation
those queries wait for slows down in turn. Waiting for a free thread first keeps the spin thread
asleep until there is somewhere to run the callback; what is not taken waits in the middleware's
queues, where it belongs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ExternalShutdownException,
    ShutdownException,
    TimeoutException,
)

_NOT_READY = (
    ConditionReachedException,
    ExternalShutdownException,
    ShutdownException,
    TimeoutException,
)


class PooledCallbackExecutor(Executor):
    """Runs callbacks on ``num_threads`` threads; at most that many run or wait at once."""

    def __init__(self, num_threads: int, *, context=None):
        super().__init__(context=context)
        if num_threads < 1:
            super().shutdown()
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        self._pool = ThreadPoolExecutor(num_threads, thread_name_prefix="sole_callback")
        self._free_threads = threading.Semaphore(num_threads)
        self._errors: list[BaseException] = []

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        self._raise_callback_error()
        # Wait for a free thread before looking for work; a bounded wait, so spin() still notices
        # shutdown while every thread is busy.
        seconds = getattr(
            timeout_sec, "timeout", timeout_sec
        )  # spin_until_future_complete's TimeoutObject
        wait = 0.5 if seconds is None or seconds < 0 else min(seconds, 0.5)
        if not self._free_threads.acquire(timeout=wait):
            return
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except _NOT_READY:
            self._free_threads.release()
            return
        except BaseException:
            self._free_threads.release()
            raise
        self._pool.submit(self._run, handler)

    def _run(self, handler) -> None:
        try:
            handler()
            error = handler.exception()
            if error is not None:
                self._errors.append(error)
        finally:
            self._free_threads.release()

    def _raise_callback_error(self) -> None:
        # A callback's exception ends spin() in the spin thread, as with rclpy's own executors.
        if self._errors:
            raise self._errors.pop(0)

    def spin_once(self, timeout_sec: float | None = None) -> None:
        self._spin_once_impl(timeout_sec)

    def _spin_once_until_future_complete(self, future, timeout_sec=None) -> None:
        self._spin_once_impl(timeout_sec, future.done)

    def spin_once_until_future_complete(self, future, timeout_sec: float | None = None) -> None:
        future.add_done_callback(lambda _: self.wake())
        self._spin_once_until_future_complete(future, timeout_sec)

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        done = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=wait_for_threads)
        return done
