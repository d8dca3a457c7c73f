"""Running a reader under tracemalloc: what it returned (or the refusal's message) and the peak
of Python-tracked memory (numpy's allocations included), for tests that bound a reader's memory
by the size of its input."""

from __future__ import annotations

import tracemalloc


def traced(call, refusal: type[Exception]):
    """(call()'s result, or str(the refusal), peak traced bytes); any other exception propagates."""
    tracemalloc.start()
    try:
        outcome = call()
    except refusal as error:
        outcome = str(error)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, peak
