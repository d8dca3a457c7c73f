"""Hypothesis settings shared by the property tests.

CI draws the same examples on every run (derandomized), so a red run is always reproducible and
never depends on luck. ``SOLE_FUZZ=explore`` draws twenty times as many fresh examples each run,
for hunting new failures before they are pinned as regular tests."""

from __future__ import annotations

import os

from hypothesis import settings

EXPLORE = os.environ.get("SOLE_FUZZ") == "explore"


def fuzz_settings(examples: int, **options) -> settings:
    """``examples`` examples on CI, derandomized; twenty times as many, random, when exploring."""
    options.setdefault("deadline", None)
    if EXPLORE:
        return settings(max_examples=20 * examples, derandomize=False, **options)
    return settings(max_examples=examples, derandomize=True, database=None, **options)
