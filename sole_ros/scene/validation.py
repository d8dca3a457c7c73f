"""Checks on everything that enters the map. Each check returns a clean array or raises
InvalidInput with the reason; nothing is partially accepted."""

from __future__ import annotations

import math

import numpy as np

from sole_ros.messages.images import COLOR_ENCODINGS as _COLOR_TABLE
from sole_ros.messages.images import DEPTH_ENCODINGS as _DEPTH_TABLE

from .errors import InvalidInput

# A rotation block R is accepted when max|R^T R - I| and |det R - 1| are below this: loose enough
# for float32 matrices and quaternions rounded by a transport, tight enough to refuse a scaling,
# a shear or a mirror.
ROTATION_TOLERANCE = 1e-3

# The encodings of the package's one table (sole_ros/messages/images.py): colour names, and each
# depth encoding's array dtype.
COLOR_ENCODINGS = tuple(_COLOR_TABLE)
DEPTH_ENCODINGS = {name: dtype.type for name, (dtype, _) in _DEPTH_TABLE.items()}


def _as_array(value, name: str) -> np.ndarray:
    if value is None:
        raise InvalidInput(f"{name} is missing")
    try:
        return np.asarray(value)
    except Exception as error:  # noqa: BLE001 - any conversion failure is a bad input
        raise InvalidInput(f"{name} is not an array: {error}") from None


def check_stamp(stamp) -> float:
    try:
        value = float(stamp)
    except (TypeError, ValueError):
        raise InvalidInput(f"stamp {stamp!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidInput(f"stamp {value} is not finite")
    return value


def check_pose(pose, name: str = "pose") -> np.ndarray:
    """A rigid 4x4 transform (float64): finite, last row 0 0 0 1, a proper rotation block."""
    array = _as_array(pose, name)
    if array.shape != (4, 4):
        raise InvalidInput(f"{name} must be a 4x4 matrix, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InvalidInput(f"{name} must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{name} contains NaN or inf")
    if not np.allclose(array[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise InvalidInput(f"{name} last row must be [0 0 0 1], got {array[3].tolist()}")
    rotation = array[:3, :3]
    orthogonality = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    if orthogonality > ROTATION_TOLERANCE:
        raise InvalidInput(
            f"{name} rotation block is not orthonormal (max |R^T R - I| = {orthogonality:.3g}); "
            "scaled or sheared transforms are not poses"
        )
    determinant = float(np.linalg.det(rotation))
    if abs(determinant - 1.0) > ROTATION_TOLERANCE:
        raise InvalidInput(
            f"{name} rotation block has determinant {determinant:.4f}, not +1 (a mirror)"
        )
    return array


def check_intrinsics(K, width: int, height: int) -> np.ndarray:
    """A pinhole 3x3 camera matrix: positive focal lengths, last row 0 0 1."""
    array = _as_array(K, "K")
    if array.shape != (3, 3):
        raise InvalidInput(f"K must be 3x3, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InvalidInput(f"K must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InvalidInput("K contains NaN or inf")
    if not (array[0, 0] > 0 and array[1, 1] > 0):
        raise InvalidInput(
            f"K focal lengths must be positive, got fx={array[0, 0]}, fy={array[1, 1]}"
        )
    if array[1, 0] != 0 or not np.allclose(array[2], (0.0, 0.0, 1.0)):
        raise InvalidInput(f"K is not a pinhole camera matrix (rows 2-3: {array[1:].tolist()})")
    if not (-width <= array[0, 2] <= 2 * width and -height <= array[1, 2] <= 2 * height):
        raise InvalidInput(
            f"K principal point ({array[0, 2]}, {array[1, 2]}) is far outside a {width}x{height} image"
        )
    return array


def depth_in_metres(depth, depth_scale: float, encoding: str | None = None) -> np.ndarray:
    """Depth image -> float32 metres. float32/float64 are metres; uint16 is scaled by depth_scale
    (0.001 for millimetres, the ROS 16UC1 convention). NaN, inf and 0 stay and are dropped later.
    With `encoding` (a ROS name) the array's dtype must match it."""
    array = _as_array(depth, "depth")
    if encoding is not None:
        if encoding not in DEPTH_ENCODINGS:
            raise InvalidInput(
                f"unknown depth encoding {encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}"
            )
        if array.dtype != DEPTH_ENCODINGS[encoding]:
            raise InvalidInput(
                f"depth encoding {encoding} needs dtype {np.dtype(DEPTH_ENCODINGS[encoding])}, "
                f"got {array.dtype}"
            )
    if array.ndim != 2:
        raise InvalidInput(f"depth must be a 2D image (H,W), got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidInput(f"depth image is empty (shape {array.shape})")
    if array.dtype == np.uint16:
        if not (math.isfinite(depth_scale) and depth_scale > 0):
            raise InvalidInput(f"depth_scale must be positive, got {depth_scale}")
        return array.astype(np.float32) * np.float32(depth_scale)
    if array.dtype in (np.float32, np.float64):
        return array.astype(np.float32, copy=False)
    raise InvalidInput(
        f"unsupported depth encoding (dtype {array.dtype}): use float32 metres or uint16 with depth_scale"
    )


def color_image_rgb(color, encoding: str, shape: tuple[int, int]) -> np.ndarray:
    """Colour image of the given encoding -> (H,W,3) uint8 RGB, same size as the depth image."""
    if encoding not in COLOR_ENCODINGS:
        raise InvalidInput(
            f"unknown colour encoding {encoding!r}; supported: {', '.join(COLOR_ENCODINGS)}"
        )
    array = _as_array(color, "color")
    if array.dtype != np.uint8:
        raise InvalidInput(f"color must be uint8, got dtype {array.dtype}")
    channels = _COLOR_TABLE[encoding][0]
    if encoding == "mono8" and array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels:
        raise InvalidInput(
            f"color with encoding {encoding} must be (H,W,{channels}), got shape {array.shape}"
        )
    if array.shape[:2] != tuple(shape):
        raise InvalidInput(
            f"color size {array.shape[1]}x{array.shape[0]} does not match depth size "
            f"{shape[1]}x{shape[0]}"
        )
    if encoding == "mono8":
        return np.repeat(array, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(array[:, :, 2::-1])
    return array[:, :, :3]


def point_colors_rgb(colors, count: int) -> np.ndarray:
    """Per-point colours -> (N,3) uint8 RGB. Accepts (N,3) uint8 RGB, (N,4) uint8 RGBA, or (N,)
    uint32 packed as in PCL/ROS clouds (0xAARRGGBB, i.e. bytes B,G,R,A in memory)."""
    array = _as_array(colors, "colors")
    if array.ndim == 1 and array.dtype == np.uint32:
        if array.shape[0] != count:
            raise InvalidInput(f"colors has {array.shape[0]} entries for {count} points")
        return unpack_rgb(array)
    if array.ndim == 2 and array.dtype == np.uint8 and array.shape[1] in (3, 4):
        if array.shape[0] != count:
            raise InvalidInput(f"colors has {array.shape[0]} rows for {count} points")
        return array[:, :3]
    raise InvalidInput(
        f"unsupported point colours (shape {array.shape}, dtype {array.dtype}): "
        "use (N,3) uint8 RGB, (N,4) uint8 RGBA or (N,) uint32 packed 0xAARRGGBB"
    )


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """(N,) uint32 0xAARRGGBB (or float32 carrying those bits, the PCL 'rgb' field) -> (N,3) uint8."""
    packed = np.ascontiguousarray(packed)
    if packed.dtype == np.float32:
        packed = packed.view(np.uint32)
    if packed.dtype != np.uint32:
        raise InvalidInput(f"packed colours must be uint32 or float32, got {packed.dtype}")
    as_bytes = packed.view(np.uint8).reshape(-1, 4)  # little-endian: B, G, R, A
    return np.ascontiguousarray(as_bytes[:, 2::-1])


def check_points(points) -> np.ndarray:
    """(N,3) real coordinates -> float64 (N,3). Non-finite rows are kept here and dropped later."""
    array = _as_array(points, "points")
    if array.ndim != 2 or array.shape[1] != 3:
        raise InvalidInput(f"points must be (N,3), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise InvalidInput(f"points must be real numbers, got dtype {array.dtype}")
    return array


def check_features(features, feature_dim: int):
    """A dense feature grid (h,w,D) covering the whole image, as a torch tensor."""
    import torch

    if feature_dim <= 0:
        raise InvalidInput("features were given but this map stores none (feature_dim=0)")
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)
    if not isinstance(features, torch.Tensor):
        raise InvalidInput(f"features must be a tensor or array, got {type(features).__name__}")
    if features.ndim != 3:
        raise InvalidInput(f"features must be (h,w,D), got shape {tuple(features.shape)}")
    if features.shape[2] != feature_dim:
        raise InvalidInput(
            f"features have {features.shape[2]} channels, the map stores {feature_dim}"
        )
    if features.shape[0] < 1 or features.shape[1] < 1:
        raise InvalidInput(f"features grid is empty (shape {tuple(features.shape)})")
    if not features.is_floating_point():
        raise InvalidInput(f"features must be floating point, got {features.dtype}")
    if not bool(torch.isfinite(features).all()):
        raise InvalidInput("features contain NaN or inf")
    return features
