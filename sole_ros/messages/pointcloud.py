"""sensor_msgs/PointCloud2 -> numpy without ROS: read x,y,z(,rgb) from any layout.

Duck-typed on the message's field names, so it decodes rclpy messages and the dataclasses that
rosbags deserialises alike (this module imports nothing from ROS).

Reading is strict: every size and offset is checked before a byte is touched, so a malformed
message gives MalformedMessage with the reason and never an IndexError or a garbage cloud.
"""

from __future__ import annotations

import numpy as np

from sole_ros.messages.errors import MalformedMessage, message_bytes

__all__ = [
    "MalformedMessage",
    "read_points",
    "POINT_FIELD_DTYPES",
    "DATATYPE_OF_DTYPE",
    "PointFieldType",
]


class PointFieldType:
    """sensor_msgs/PointField datatype constants (fixed by the message definition)."""

    INT8 = 1
    UINT8 = 2
    INT16 = 3
    UINT16 = 4
    INT32 = 5
    UINT32 = 6
    FLOAT32 = 7
    FLOAT64 = 8


# PointField datatype constant -> numpy dtype (byte order applied per message).
POINT_FIELD_DTYPES: dict[int, np.dtype] = {
    PointFieldType.INT8: np.dtype(np.int8),
    PointFieldType.UINT8: np.dtype(np.uint8),
    PointFieldType.INT16: np.dtype(np.int16),
    PointFieldType.UINT16: np.dtype(np.uint16),
    PointFieldType.INT32: np.dtype(np.int32),
    PointFieldType.UINT32: np.dtype(np.uint32),
    PointFieldType.FLOAT32: np.dtype(np.float32),
    PointFieldType.FLOAT64: np.dtype(np.float64),
}
DATATYPE_OF_DTYPE = {dtype: datatype for datatype, dtype in POINT_FIELD_DTYPES.items()}
_COORDINATE_TYPES = (PointFieldType.FLOAT32, PointFieldType.FLOAT64)
# Packed colour: 4 bytes holding 0x(AA)RRGGBB, published as float32 (PCL, RViz) or uint32.
_COLOUR_TYPES = (PointFieldType.FLOAT32, PointFieldType.UINT32, PointFieldType.INT32)
_COLOUR_NAMES = ("rgb", "rgba")


def _check_fields(msg) -> dict:
    """Validate every declared field; return them by name."""
    by_name: dict = {}
    for field in msg.fields:
        if field.datatype not in POINT_FIELD_DTYPES:
            raise MalformedMessage(f"field {field.name!r} has unknown datatype {field.datatype}")
        # count 0 is what some older drivers leave unset; it still occupies one element.
        size = POINT_FIELD_DTYPES[field.datatype].itemsize * max(field.count, 1)
        if field.offset + size > msg.point_step:
            raise MalformedMessage(
                f"field {field.name!r} (offset {field.offset}, {size} bytes) does not fit in "
                f"point_step {msg.point_step}"
            )
        if field.name in by_name:
            raise MalformedMessage(f"field {field.name!r} is declared twice")
        by_name[field.name] = field
    for axis in "xyz":
        field = by_name.get(axis)
        if field is None:
            raise MalformedMessage(f"no {axis!r} field (fields: {sorted(by_name) or 'none'})")
        if field.datatype not in _COORDINATE_TYPES:
            raise MalformedMessage(
                f"field {axis!r} must be float32 or float64, not datatype {field.datatype}"
            )
    return by_name


def _check_layout(msg, num_bytes: int) -> None:
    if msg.width * msg.height == 0:
        return
    if msg.point_step <= 0:
        raise MalformedMessage("point_step is 0 for a non-empty cloud")
    if msg.row_step < msg.width * msg.point_step:
        raise MalformedMessage(
            f"row_step {msg.row_step} is less than width {msg.width} x point_step {msg.point_step}"
        )
    expected = msg.row_step * msg.height
    if num_bytes != expected:
        raise MalformedMessage(
            f"data has {num_bytes} bytes, row_step {msg.row_step} x height {msg.height} "
            f"needs {expected}"
        )


def _column(points: np.ndarray, offset: int, dtype: np.dtype) -> np.ndarray:
    """The value of type ``dtype`` at byte ``offset`` of every point (rows of ``points``)."""
    raw = np.ascontiguousarray(points[:, offset : offset + dtype.itemsize])
    return raw.view(dtype).reshape(-1)


def read_points(msg) -> tuple[np.ndarray, np.ndarray | None]:
    """Points of a PointCloud2 as (xyz float32 (N,3), rgb uint8 (N,3) or None).

    Accepts any field order, padding inside points and at row ends, either byte order and
    organised clouds (rows are concatenated). Points with a non-finite coordinate are dropped
    (organised clouds mark missing returns with NaN). Colour comes from a packed ``rgb``/``rgba``
    field (float32 or uint32 holding 0x(AA)RRGGBB); None when there is none.
    Raises MalformedMessage for any inconsistency.
    """
    fields = _check_fields(msg)
    data = message_bytes(msg.data)
    _check_layout(msg, data.size)
    colour_field = next((fields[n] for n in _COLOUR_NAMES if n in fields), None)
    if colour_field is not None and colour_field.datatype not in _COLOUR_TYPES:
        raise MalformedMessage(
            f"field {colour_field.name!r} must be a packed 4-byte float32/uint32, "
            f"not datatype {colour_field.datatype}"
        )

    count = msg.width * msg.height
    if count == 0:
        return np.zeros((0, 3), np.float32), (
            None if colour_field is None else np.zeros((0, 3), np.uint8)
        )
    # One row of point_step bytes per point, the row_step padding cut off.
    rows = data.reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    points = rows.reshape(count, msg.point_step)
    byteorder = ">" if msg.is_bigendian else "<"

    xyz = np.empty((count, 3), np.float32)
    for i, axis in enumerate("xyz"):
        field = fields[axis]
        dtype = POINT_FIELD_DTYPES[field.datatype].newbyteorder(byteorder)
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, dropped below
            xyz[:, i] = _column(points, field.offset, dtype)
    keep = np.isfinite(xyz).all(axis=1)
    xyz = xyz[keep]
    if colour_field is None:
        return xyz, None
    # The 4 bytes are read as uint32 whatever the declared type: only the bits matter.
    packed = _column(points, colour_field.offset, np.dtype(np.uint32).newbyteorder(byteorder))[keep]
    rgb = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1).astype(
        np.uint8
    )
    return xyz, rgb
