"""The input boundary of message decoding: the one exception it raises for bad messages, and the
checked read of a message's raw payload that every decoder starts from."""

from __future__ import annotations

import numpy as np


class MalformedMessage(ValueError):
    """A message that is inconsistent or unsupported; ``str(exc)`` is a one-line human reason.

    Subclasses ValueError so that callers that only know "bad input" still catch it.
    """


def message_bytes(data) -> np.ndarray:
    """A uint8[] field (Image.data, PointCloud2.data) as a flat uint8 array, not copied when it
    is a buffer (array.array, bytes, a numpy array as rosbags gives); MalformedMessage when it is
    not bytes at all."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain sequence of ints (messages built with field checks off)
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedMessage(f"data is not a byte buffer: {exc}") from None
