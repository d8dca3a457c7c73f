"""Sensor messages -> the frame the pipeline fuses, without ROS: one builder for node and bag alike.

``rgbd_frame`` decodes a depth image, its camera info and (optionally) the colour image paired
with it into a SensorFrame; ``cloud_frame`` does the same for a point cloud; ``fuse`` puts a frame
into a PerceptionPipeline. sole_node, the bag replay and anything else fed by sensor messages go
through these, so every path decodes, checks and sizes its frames by the same rules.

Colour and depth of different sizes: a colour image that is a uniformly scaled copy of the depth
image's view (the same aspect ratio within 1 %, the rule camera_matrix applies to camera info) is
resized to the depth image (bilinear); registered streams at another resolution share their
optical centre. Any other difference is refused with MalformedMessage: such colour is not
registered to the depth image, and pasting it on would colour the map wrongly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sole_ros.messages.errors import MalformedMessage
from sole_ros.messages.images import camera_matrix, color_to_rgb, depth_to_metres
from sole_ros.messages.pointcloud import read_points
from sole_ros.messages.poses import stamp_to_seconds

# Input names, as the counters and /diagnostics show them.
POINTS, DEPTH, COLOR = "points", "depth", "color"
ASPECT_TOLERANCE = 1e-2  # relative; what camera_matrix accepts as a uniformly scaled image

PoseLookup = Callable[[float, str], np.ndarray]  # (stamp, frame_id) -> fixed-frame-from-sensor 4x4

__all__ = [
    "SensorFrame",
    "rgbd_frame",
    "cloud_frame",
    "fuse",
    "match_color_to_depth",
    "POINTS",
    "DEPTH",
    "COLOR",
    "ASPECT_TOLERANCE",
]


@dataclass
class SensorFrame:
    """One decoded input with its pose (fixed-frame-from-sensor): RGB-D or a point cloud."""

    stamp: float
    frame_id: str
    pose: np.ndarray
    depth: np.ndarray | None = None  # (H,W) float32 metres, NaN = no reading
    K: np.ndarray | None = None
    color: np.ndarray | None = None  # (H,W,3) uint8 RGB, registered to depth
    points: np.ndarray | None = None  # (N,3) float32 in the sensor frame
    point_colors: np.ndarray | None = None  # (N,3) uint8

    @property
    def inputs(self) -> tuple[str, ...]:
        """The inputs this frame came from (their counters share its fate)."""
        if self.points is not None:
            return (POINTS,)
        return (DEPTH, COLOR) if self.color is not None else (DEPTH,)


def match_color_to_depth(
    color: np.ndarray, depth_shape: tuple[int, int], on_resize: Callable[[str], None] | None = None
) -> np.ndarray:
    """``color`` (H,W,3) at the depth image's size: as it is, resized when it is a uniformly
    scaled view, else MalformedMessage. ``on_resize(text)`` hears of each resize."""
    (ch, cw), (dh, dw) = color.shape[:2], depth_shape
    if (ch, cw) == (dh, dw):
        return color
    sizes = f"colour {cw}x{ch} and depth {dw}x{dh}"
    if min(ch, cw, dh, dw) <= 0 or not math.isclose(cw / dw, ch / dh, rel_tol=ASPECT_TOLERANCE):
        raise MalformedMessage(
            f"{sizes} are not the same view (aspect ratios differ): register the colour "
            "to the depth image (e.g. the driver's aligned depth)"
        )
    from PIL import Image

    if on_resize is not None:
        on_resize(f"{sizes} differ: colour resized to the depth image's size (taken as registered)")
    return np.asarray(Image.fromarray(color).resize((dw, dh), Image.BILINEAR))


def rgbd_frame(
    depth_msg,
    info,
    color_msg=None,
    *,
    pose: PoseLookup,
    stamp: float | None = None,
    on_resize: Callable[[str], None] | None = None,
) -> SensorFrame:
    """A depth image (+ its CameraInfo ``info`` and the colour image paired with it) as a frame.

    ``pose(stamp, frame_id)`` is asked last, once the messages are known to be usable. ``stamp``
    defaults to the depth image's header stamp. MalformedMessage (or ValueError) names what is
    wrong with the messages; whatever ``pose`` raises passes through.
    """
    depth = depth_to_metres(depth_msg)
    K = camera_matrix(info, depth_msg)
    color = None
    if color_msg is not None:
        color = match_color_to_depth(color_to_rgb(color_msg), depth.shape, on_resize)
    stamp = stamp_to_seconds(depth_msg.header.stamp) if stamp is None else stamp
    frame_id = depth_msg.header.frame_id
    return SensorFrame(stamp, frame_id, pose(stamp, frame_id), depth=depth, K=K, color=color)


def cloud_frame(msg, *, pose: PoseLookup, stamp: float | None = None) -> SensorFrame:
    """A PointCloud2 as a frame (points in the sensor frame, their colours when the cloud has them)."""
    points, rgb = read_points(msg)
    stamp = stamp_to_seconds(msg.header.stamp) if stamp is None else stamp
    frame_id = msg.header.frame_id
    return SensorFrame(stamp, frame_id, pose(stamp, frame_id), points=points, point_colors=rgb)


def fuse(pipeline, frame: SensorFrame):
    """Put ``frame`` into ``pipeline`` (a PerceptionPipeline); the map's InvalidInput passes through."""
    if frame.depth is not None:
        return pipeline.ingest_rgbd(
            frame.depth, frame.K, frame.pose, color=frame.color, stamp=frame.stamp
        )
    return pipeline.ingest_points(
        frame.points, frame.pose, colors=frame.point_colors, stamp=frame.stamp
    )
