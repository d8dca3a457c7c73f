"""Segmented instances -> visualization_msgs/MarkerArray (a box and a label per instance)."""

from __future__ import annotations

import colorsys
import math
from typing import Iterable

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

__all__ = ["instance_markers", "instance_color", "PALETTE"]


def _make_palette(size: int = 16) -> tuple[tuple[float, float, float], ...]:
    # Hues a golden-ratio step apart: neighbouring ids get clearly different colours.
    golden = (math.sqrt(5) - 1) / 2
    return tuple(
        colorsys.hsv_to_rgb((i * golden) % 1.0, 0.75 if i % 2 else 0.95, 0.95) for i in range(size)
    )


PALETTE = _make_palette()
MIN_BOX_SIZE = 0.01  # metres; RViz warns about (and hides) zero-scale markers


def instance_color(instance_id: int, alpha: float = 1.0) -> ColorRGBA:
    """The palette colour of an instance id (the same id always gets the same colour)."""
    r, g, b = PALETTE[int(instance_id) % len(PALETTE)]
    return ColorRGBA(r=r, g=g, b=b, a=float(alpha))


def _vector(instance, name: str) -> np.ndarray:
    value = np.asarray(getattr(instance, name), dtype=np.float64).reshape(-1)
    if value.shape != (3,) or not np.isfinite(value).all():
        raise ValueError(
            f"instance {getattr(instance, 'id', '?')}: {name} must be 3 finite numbers, not {value.tolist()}"
        )
    return value


def _box_edges(center: np.ndarray, size: np.ndarray) -> list[Point]:
    """The 12 edges of an axis-aligned box as 24 LINE_LIST points."""
    half = size / 2
    corners = (
        np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
        + center
    )
    points = []
    for i in range(8):
        for axis in range(3):
            j = i | (1 << (2 - axis))  # the corner across this axis (bit order follows sx, sy, sz)
            if j != i:
                points += [
                    Point(x=float(corners[i][0]), y=float(corners[i][1]), z=float(corners[i][2])),
                    Point(x=float(corners[j][0]), y=float(corners[j][1]), z=float(corners[j][2])),
                ]
    return points


def instance_markers(
    header,
    instances: Iterable,
    ns: str = "sole",
    lifetime: float = 0.0,
    *,
    style: str = "cube",
    alpha: float = 0.4,
    line_width: float = 0.01,
    text_height: float = 0.06,
    show_score: bool = True,
) -> MarkerArray:
    """A MarkerArray: DELETEALL, then per instance a box and a "label 0.87" text above it (the
    label alone without ``show_score``).

    Instances are duck-typed: ``label, score, bbox_center (3,), bbox_size (3,)`` and ``id``
    (the position in ``instances`` when absent). The box is
    a translucent CUBE (``style="cube"``) or a LINE_LIST wireframe (``style="lines"``) coloured
    by id; ``lifetime`` 0 keeps markers until the next array replaces them. All markers share
    ``ns`` so the DELETEALL (scoped to ns by newer RViz versions) clears them all.
    """
    if style not in ("cube", "lines"):
        raise ValueError(f"style must be 'cube' or 'lines', not {style!r}")
    if not (math.isfinite(lifetime) and lifetime >= 0):
        raise ValueError(f"lifetime must be >= 0 seconds, not {lifetime}")
    life = Duration(sec=int(lifetime), nanosec=int(round((lifetime % 1) * 1e9)) % 1_000_000_000)
    array = MarkerArray()
    array.markers.append(Marker(header=header, ns=ns, id=0, action=Marker.DELETEALL))
    for index, instance in enumerate(instances):
        center = _vector(instance, "bbox_center")
        size = np.maximum(_vector(instance, "bbox_size"), MIN_BOX_SIZE)
        instance_id = int(getattr(instance, "id", index))  # the library Instance has no id
        box = Marker(header=header, ns=ns, id=2 * index, action=Marker.ADD, lifetime=life)
        box.pose.position = Point(x=float(center[0]), y=float(center[1]), z=float(center[2]))
        box.pose.orientation.w = 1.0
        if style == "cube":
            box.type = Marker.CUBE
            box.scale.x, box.scale.y, box.scale.z = (float(v) for v in size)
            box.color = instance_color(instance_id, alpha)
        else:
            box.type = Marker.LINE_LIST
            box.pose.position = Point()  # the edge points are absolute
            box.points = _box_edges(center, size)
            box.scale.x = float(line_width)
            box.color = instance_color(instance_id, 1.0)

        text = Marker(
            header=header,
            ns=ns,
            id=2 * index + 1,
            action=Marker.ADD,
            lifetime=life,
            type=Marker.TEXT_VIEW_FACING,
            text=f"{instance.label} {float(instance.score):.2f}"
            if show_score
            else str(instance.label),
        )
        text.pose.position = Point(
            x=float(center[0]), y=float(center[1]), z=float(center[2] + size[2] / 2 + text_height)
        )
        text.pose.orientation.w = 1.0
        text.scale.z = float(text_height)  # TEXT markers use only scale.z (the letter height)
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        array.markers += [box, text]
    return array
