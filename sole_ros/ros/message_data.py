"""The raw payload of a message (a uint8[] field such as Image.data or PointCloud2.data)."""
from __future__ import annotations

import numpy as np

from sole_ros.ros.errors import MalformedMessage


def message_bytes(data) -> np.ndarray:
    """``data`` as a flat uint8 array, without a copy when it is a buffer (array.array, bytes)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain sequence of ints (messages built with field checks off)
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedMessage(f"data is not a byte buffer: {exc}") from None
