"""Small geometry helpers shared by the synthetic scenes, training augmentation and inference."""

from __future__ import annotations

import numpy as np


def yaw_matrix(angle: float) -> np.ndarray:
    """3x3 rotation by ``angle`` (radians) about the z axis, which points up in every scene here."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
