"""sensor_msgs/PointCloud2 <-> numpy: read x,y,z(,rgb) from any layout, write clouds RViz shows.

Reading is ROS-free (sole_ros.messages.pointcloud, shared with the bag replay) and re-exported
here; writing builds rclpy messages, so it lives in the ROS layer.
"""

from __future__ import annotations

import array
from typing import Mapping

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from sole_ros.messages.pointcloud import DATATYPE_OF_DTYPE as _DATATYPE_OF_DTYPE
from sole_ros.messages.pointcloud import POINT_FIELD_DTYPES, MalformedMessage, read_points

__all__ = ["MalformedMessage", "read_points", "make_cloud", "POINT_FIELD_DTYPES"]


def _as_field_array(name: str, values, count: int) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (count,):
        raise ValueError(f"extra field {name!r} has shape {values.shape}, expected ({count},)")
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    if values.dtype.newbyteorder("=") not in _DATATYPE_OF_DTYPE:
        raise ValueError(
            f"extra field {name!r} has dtype {values.dtype}; PointCloud2 holds int8/16/32, "
            "uint8/16/32, float32 or float64 (convert int64 ids to uint32/int32)"
        )
    return values


def make_cloud(
    header, xyz, rgb=None, extra_fields: Mapping[str, np.ndarray] | None = None
) -> PointCloud2:
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
    columns: list[tuple[str, np.ndarray]] = [
        (axis, xyz[:, i].astype(np.float32)) for i, axis in enumerate("xyz")
    ]
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
    record = np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step}
    )
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
