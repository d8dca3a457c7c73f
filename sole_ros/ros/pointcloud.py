"""sensor_msgs/PointCloud2 <-> numpy: read x,y,z(,rgb) from any layout, write clouds RViz shows.

Reading is strict: every size and offset is checked before a byte is touched, so a malformed
message gives MalformedMessage with the reason and never an IndexError or a garbage cloud.
"""
from __future__ import annotations

import array
from typing import Mapping

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from sole_ros.ros.errors import MalformedMessage, message_bytes

__all__ = ["MalformedMessage", "read_points", "make_cloud", "POINT_FIELD_DTYPES"]

# PointField datatype constant -> numpy dtype (byte order applied per message).
POINT_FIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}
_DATATYPE_OF_DTYPE = {dtype: datatype for datatype, dtype in POINT_FIELD_DTYPES.items()}
_COORDINATE_TYPES = (PointField.FLOAT32, PointField.FLOAT64)
# Packed colour: 4 bytes holding 0x(AA)RRGGBB, published as float32 (PCL, RViz) or uint32.
_COLOUR_TYPES = (PointField.FLOAT32, PointField.UINT32, PointField.INT32)
_COLOUR_NAMES = ("rgb", "rgba")


def _check_fields(msg: PointCloud2) -> dict[str, PointField]:
    """Validate every declared field; return them by name."""
    by_name: dict[str, PointField] = {}
    for field in msg.fields:
        if field.datatype not in POINT_FIELD_DTYPES:
            raise MalformedMessage(f"field {field.name!r} has unknown datatype {field.datatype}")
        # count 0 is what some older drivers leave unset; it still occupies one element.
        size = POINT_FIELD_DTYPES[field.datatype].itemsize * max(field.count, 1)
        if field.offset + size > msg.point_step:
            raise MalformedMessage(
                f"field {field.name!r} (offset {field.offset}, {size} bytes) does not fit in "
                f"point_step {msg.point_step}")
        if field.name in by_name:
            raise MalformedMessage(f"field {field.name!r} is declared twice")
        by_name[field.name] = field
    for axis in "xyz":
        field = by_name.get(axis)
        if field is None:
            raise MalformedMessage(f"no {axis!r} field (fields: {sorted(by_name) or 'none'})")
        if field.datatype not in _COORDINATE_TYPES:
            raise MalformedMessage(
                f"field {axis!r} must be float32 or float64, not datatype {field.datatype}")
    return by_name


def _check_layout(msg: PointCloud2, num_bytes: int) -> None:
    if msg.width * msg.height == 0:
        return
    if msg.point_step <= 0:
        raise MalformedMessage("point_step is 0 for a non-empty cloud")
    if msg.row_step < msg.width * msg.point_step:
        raise MalformedMessage(
            f"row_step {msg.row_step} is less than width {msg.width} x point_step {msg.point_step}")
    expected = msg.row_step * msg.height
    if num_bytes != expected:
        raise MalformedMessage(
            f"data has {num_bytes} bytes, row_step {msg.row_step} x height {msg.height} "
            f"needs {expected}")


def _column(points: np.ndarray, offset: int, dtype: np.dtype) -> np.ndarray:
    """The value of type ``dtype`` at byte ``offset`` of every point (rows of ``points``)."""
    raw = np.ascontiguousarray(points[:, offset:offset + dtype.itemsize])
    return raw.view(dtype).reshape(-1)


def read_points(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
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
            f"not datatype {colour_field.datatype}")

    count = msg.width * msg.height
    if count == 0:
        return np.zeros((0, 3), np.float32), (None if colour_field is None else np.zeros((0, 3), np.uint8))
    # One row of point_step bytes per point, the row_step padding cut off.
    rows = data.reshape(msg.height, msg.row_step)[:, :msg.width * msg.point_step]
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
    rgb = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1).astype(np.uint8)
    return xyz, rgb


def _as_field_array(name: str, values, count: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (count,):
        raise ValueError(f"extra field {name!r} has shape {values.shape}, expected ({count},)")
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    if values.dtype.newbyteorder("=") not in _DATATYPE_OF_DTYPE:
        raise ValueError(
            f"extra field {name!r} has dtype {values.dtype}; PointCloud2 holds int8/16/32, "
            "uint8/16/32, float32 or float64 (convert int64 ids to uint32/int32)")
    return values


def make_cloud(header, xyz, rgb=None, extra_fields: Mapping[str, np.ndarray] | None = None) -> PointCloud2:
    """An unorganised PointCloud2 (height 1) that RViz and PCL read.

    ``xyz`` (N,3) is written as float32 x,y,z; ``rgb`` (N,3) uint8 as the float32 field "rgb"
    holding the bits 0x00RRGGBB (the PCL/RViz convention); ``extra_fields`` maps names to (N,)
    arrays (e.g. ``instance_id`` uint32, ``score`` float32) written with their own dtype.
    Fields are aligned to their size and the data is little-endian.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), not {xyz.shape}")
    count = xyz.shape[0]
    columns: list[tuple[str, np.ndarray]] = [(axis, xyz[:, i].astype(np.float32)) for i, axis in enumerate("xyz")]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (count, 3):
            raise ValueError(f"rgb must have shape ({count}, 3), not {rgb.shape}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8, not {rgb.dtype}")
        c = rgb.astype(np.uint32)
        packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        columns.append(("rgb", packed.view(np.float32)))
    for name, values in (extra_fields or {}).items():
        if name in {n for n, _ in columns}:
            raise ValueError(f"extra field {name!r} clashes with a standard field")
        columns.append((name, _as_field_array(name, values, count)))

    fields, names, formats, offsets = [], [], [], []
    offset = 0
    for name, values in columns:
        dtype = values.dtype.newbyteorder("<")
        offset = -(-offset // dtype.itemsize) * dtype.itemsize  # natural alignment
        datatype = _DATATYPE_OF_DTYPE[dtype.newbyteorder("=")]
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=1))
        names.append(name)
        formats.append(dtype)
        offsets.append(offset)
        offset += dtype.itemsize
    alignment = max(f.itemsize for f in formats)
    point_step = -(-offset // alignment) * alignment
    record = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    table = np.zeros(count, dtype=record)
    for name, values in columns:
        table[name] = values

    msg = PointCloud2()
    msg.header = header
    msg.height = 1
    msg.width = count
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = point_step
    msg.row_step = point_step * count
    buffer = array.array("B")
    buffer.frombytes(table.tobytes())  # the message's checked setter is slow for plain bytes
    msg.data = buffer
    msg.is_dense = bool(np.isfinite(xyz).all())
    return msg
