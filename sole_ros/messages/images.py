"""sensor_msgs/Image and CameraInfo -> numpy without ROS: depth in metres, colour as RGB, K.

Duck-typed on the messages' field names (rclpy messages and rosbags dataclasses alike).

Only what an RGB-D pipeline needs; every size is checked first, so a malformed or unsupported
message gives MalformedMessage with the reason (the package does not depend on cv_bridge).
"""

from __future__ import annotations

import math

import numpy as np

from sole_ros.messages.errors import MalformedMessage, message_bytes

__all__ = [
    "MalformedMessage",
    "depth_to_metres",
    "color_to_rgb",
    "camera_matrix",
    "depth_image_fields",
    "color_image_fields",
    "DEPTH_ENCODINGS",
    "COLOR_ENCODINGS",
]

# The package's one table of image encodings: decoding, encoding (the sensor player) and telling
# depth topics from colour ones (the bag replay) all read it. A new encoding is a row here.
# encoding -> (element dtype, metres per stored unit). REP 118: 16-bit depth is millimetres.
DEPTH_ENCODINGS: dict[str, tuple[np.dtype, float]] = {
    "16UC1": (np.dtype(np.uint16), 1e-3),
    "mono16": (np.dtype(np.uint16), 1e-3),
    "32FC1": (np.dtype(np.float32), 1.0),
    "64FC1": (np.dtype(np.float64), 1.0),
}
# encoding -> (channels, channel indices giving R,G,B). All are 8 bits per channel.
COLOR_ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}


def _pixel_rows(msg, bytes_per_pixel: int) -> np.ndarray:
    """The image bytes as (height, width * bytes_per_pixel), the step padding cut off."""
    row_bytes = msg.width * bytes_per_pixel
    if msg.step < row_bytes:
        raise MalformedMessage(
            f"step {msg.step} is less than width {msg.width} x {bytes_per_pixel} bytes per pixel "
            f"({msg.encoding})"
        )
    data = message_bytes(msg.data)
    expected = msg.step * msg.height
    if data.size != expected:
        raise MalformedMessage(
            f"data has {data.size} bytes, step {msg.step} x height {msg.height} needs {expected}"
        )
    if expected == 0:
        return np.zeros((msg.height, row_bytes), np.uint8)
    return data.reshape(msg.height, msg.step)[:, :row_bytes]


def depth_to_metres(msg) -> np.ndarray:
    """A depth image as float32 (H, W) metres; invalid pixels are NaN.

    16UC1 and mono16 are millimetres, 32FC1/64FC1 metres. Invalid means 0 in the integer
    encodings and NaN, +-inf or <= 0 in the float ones (REP 118), so that callers need only
    ``np.isfinite``.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise MalformedMessage(
            f"unsupported depth encoding {msg.encoding!r} (supported: {', '.join(DEPTH_ENCODINGS)})"
        )
    dtype, scale = DEPTH_ENCODINGS[msg.encoding]
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = _pixel_rows(msg, dtype.itemsize)
    values = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)
    with np.errstate(invalid="ignore", over="ignore"):
        metres = values.astype(np.float32) * np.float32(scale)
        metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def color_to_rgb(msg) -> np.ndarray:
    """A colour (or mono8) image as uint8 (H, W, 3) RGB; alpha is dropped, grey replicated."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise MalformedMessage(
            f"unsupported colour encoding {msg.encoding!r} (supported: {', '.join(COLOR_ENCODINGS)})"
        )
    channels, order = COLOR_ENCODINGS[msg.encoding]
    rows = _pixel_rows(msg, channels)  # 8-bit channels: byte order does not matter
    pixels = rows.reshape(msg.height, msg.width, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def depth_image_fields(depth_m: np.ndarray, encoding: str = "16UC1") -> dict:
    """The fields of a sensor_msgs/Image holding ``depth_m`` (H,W metres; NaN, inf or <= 0: no
    reading) in ``encoding``: height, width, encoding, is_bigendian, step, data (little-endian).
    The inverse of depth_to_metres, to its resolution (integer encodings round to the unit)."""
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(
            f"unsupported depth encoding {encoding!r} (supported: {', '.join(DEPTH_ENCODINGS)})"
        )
    dtype, scale = DEPTH_ENCODINGS[encoding]
    depth = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if dtype.kind == "f":
        values = np.where(valid, depth / scale, np.nan).astype(dtype.newbyteorder("<"))
    else:
        top = np.iinfo(dtype).max
        values = np.where(valid, np.clip(np.round(depth / scale), 0, top), 0).astype(
            dtype.newbyteorder("<")
        )
    height, width = depth.shape
    return dict(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * dtype.itemsize,
        data=values.tobytes(),
    )


def color_image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> dict:
    """The fields of a sensor_msgs/Image holding ``rgb`` (H,W,3 uint8) in ``encoding`` (alpha
    opaque; mono8 the channels' mean). The inverse of color_to_rgb."""
    if encoding not in COLOR_ENCODINGS:
        raise ValueError(
            f"unsupported colour encoding {encoding!r} (supported: {', '.join(COLOR_ENCODINGS)})"
        )
    channels, order = COLOR_ENCODINGS[encoding]
    rgb = np.asarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    if channels == 1:
        pixels = np.round(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)[:, :, None]
    else:
        pixels = np.full((height, width, channels), 255, np.uint8)
        pixels[:, :, list(order)] = rgb[:, :, :3]
    return dict(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
        data=np.ascontiguousarray(pixels).tobytes(),
    )


def _image_size(image) -> tuple[int, int]:
    if image is None:
        return None
    if hasattr(image, "width") and hasattr(image, "height"):  # an Image message
        return int(image.width), int(image.height)
    width, height = image
    return int(width), int(height)


def camera_matrix(info, image=None, *, allow_scaled: bool = True) -> np.ndarray:
    """The 3x3 intrinsic matrix K (float64) of ``info``, checked, for ``image`` when given.

    Binning and a region of interest in ``info`` are applied (they define the published image
    size). ``image`` (an Image or (width, height)) must have that size; when it is a uniformly
    scaled version (a resized stream) and ``allow_scaled``, K is scaled to it, else
    MalformedMessage.
    """
    k = np.array(info.k, dtype=np.float64).reshape(3, 3)  # a copy: rosbags gives read-only arrays
    if not np.isfinite(k).all():
        raise MalformedMessage("camera_info K has non-finite entries")
    if not (k[0, 0] > 0 and k[1, 1] > 0):
        raise MalformedMessage(
            f"camera_info K has fx={k[0, 0]:g}, fy={k[1, 1]:g}; both must be > 0 (uncalibrated camera?)"
        )
    if k[1, 0] != 0 or k[2, 0] != 0 or k[2, 1] != 0 or k[2, 2] != 1:
        raise MalformedMessage(
            f"camera_info K is not an intrinsic matrix (rows 2-3 must be [0 fy cy], [0 0 1]): {k.tolist()}"
        )

    # Binning divides and the ROI shifts the full-resolution pixel grid (CameraInfo.msg).
    bin_x, bin_y = max(info.binning_x, 1), max(info.binning_y, 1)
    roi = info.roi
    full_roi = roi.width == 0 or roi.height == 0
    width = (info.width if full_roi else roi.width) // bin_x
    height = (info.height if full_roi else roi.height) // bin_y
    if not full_roi:
        if roi.x_offset + roi.width > info.width or roi.y_offset + roi.height > info.height:
            raise MalformedMessage(
                f"camera_info ROI {roi.width}x{roi.height}+{roi.x_offset}+{roi.y_offset} exceeds "
                f"the sensor {info.width}x{info.height}"
            )
        k[0, 2] -= roi.x_offset
        k[1, 2] -= roi.y_offset
    k[0, :] /= bin_x
    k[1, :] /= bin_y
    size = _image_size(image)
    if size is None or size == (width, height):
        return k
    if width <= 0 or height <= 0:
        raise MalformedMessage(
            f"camera_info has no image size ({info.width}x{info.height}) to check against"
        )
    sx, sy = size[0] / width, size[1] / height
    if not allow_scaled or not math.isclose(sx, sy, rel_tol=1e-2) or min(size) <= 0:
        raise MalformedMessage(
            f"image is {size[0]}x{size[1]} but camera_info describes {width}x{height}"
        )
    # Pixel centres sit at integer coordinates, so the principal point scales about -0.5.
    k[0, 0] *= sx
    k[0, 1] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k
