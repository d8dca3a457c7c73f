"""Point-cloud files in and out: .ply, .pcd and .npz scenes for the command line and tools.

Every reader returns a ``PointFile``: finite points only, colours as float 0..1, optional per-point
features, and ``source_index`` mapping each kept point back to its row in the file, so results
can name the input's own point indices (organised PCD clouds mark missing returns with NaN).
Anything wrong with a file raises ``PointFileError`` whose message is one line: among others a
count the header declares that the data does not hold (cut short, or more data than declared),
more rows than the caller's ``max_points`` (``TooManyPointsError``, raised right after the header,
before the data is read) and a coordinate beyond ``MAX_COORDINATE``.

Formats:
- PLY: ascii, binary_little_endian and binary_big_endian; the ``vertex`` element's x, y, z,
  optional red/green/blue (integer types scaled by their maximum, float taken as 0..1 or, when
  above 1, as 0..255), and per-vertex features named ``feature_<i>`` (also ``feat_<i>``).
- PCD (read with pypcd4): ascii, binary and binary_compressed; x, y, z and a packed ``rgb`` or
  ``rgba`` field (float32 or uint32 holding 0x(AA)RRGGBB).
- NPZ: ``points`` (N,3), optional ``colors`` (N,3) uint8 or float 0..1, ``features`` (N,D).
"""

from __future__ import annotations

import math
import os
import re
import struct
import zipfile
from dataclasses import dataclass

import numpy as np

SUPPORTED_SUFFIXES = (".ply", ".pcd", ".npz")
# Metres from the origin (along any axis) beyond which a point is refused: scans of rooms and
# streets are within a few hundred metres of their frame; 1e30 is a unit or parsing error, and
# voxel indices of such points overflow.
MAX_COORDINATE = 1e4


class PointFileError(ValueError):
    """A point file that cannot be read or written; ``str(exc)`` is one line saying why."""


class TooManyPointsError(PointFileError):
    """The file declares more rows than the reader was allowed (``max_points``)."""

    def __init__(self, path: str, count: int, limit: int):
        super().__init__(f"{path}: {count} points, more than the {limit} allowed")
        self.path, self.count, self.limit = path, count, limit


@dataclass
class PointFile:
    points: np.ndarray  # (N,3) float64, all finite
    colors: np.ndarray | None  # (N,3) float32 in 0..1
    features: np.ndarray | None  # (N,D) float32
    source_index: np.ndarray  # (N,) int64: row of each point in the file
    num_input: int  # rows in the file, before non-finite points were dropped
    path: str = ""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_input_indices(self, indices) -> np.ndarray:
        """Indices into ``points`` -> indices into the file's rows."""
        return self.source_index[np.asarray(indices, dtype=np.int64)]


def read_point_file(path, max_points: int | None = None) -> PointFile:
    """Read a .ply, .pcd or .npz scene; PointFileError (one line) for anything unusable.

    max_points: refuse (TooManyPointsError) a file of more rows, as soon as its header says so.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise PointFileError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not os.path.isfile(path):
        raise PointFileError(f"{path}: no such file")
    reader = {".ply": _read_ply, ".pcd": _read_pcd, ".npz": _read_npz}[suffix]
    try:
        points, colors, features = reader(path, max_points)
    except PointFileError:
        raise
    except MemoryError:
        raise PointFileError(f"{path}: not enough memory to read it") from None
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        EOFError,
        OverflowError,
        struct.error,
        zipfile.BadZipFile,
    ) as error:
        raise PointFileError(
            f"{path}: cannot read {suffix[1:].upper()} file: {_one_line(error)}"
        ) from None
    return _finish(path, points, colors, features)


def _check_count(path: str, count: int, max_points: int | None) -> None:
    if max_points is not None and count > max_points:
        raise TooManyPointsError(path, count, max_points)


def _check_rest(path: str, kind: str, f, extra: int, declared: str) -> None:
    """Data beyond what the header declares means the header undercounts: refuse it (a few line
    ends or spaces some writers leave at the end are fine)."""
    if extra > 16 or f.read(extra).strip(b" \t\r\n\x00"):
        raise PointFileError(
            f"{path}: {kind} file holds more data than its header declares: {declared}, "
            f"and {extra} bytes more follow"
        )


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def _finish(path: str, points, colors, features) -> PointFile:
    """Check shapes, drop non-finite points, keep the index map."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointFileError(f"{path}: points must have shape (N, 3), not {points.shape}")
    if not np.issubdtype(points.dtype, np.number):
        raise PointFileError(f"{path}: points are not numbers (dtype {points.dtype})")
    count = points.shape[0]
    points = points.astype(np.float64)
    if colors is not None:
        colors = _colors_to_unit(np.asarray(colors), path)
        if colors.shape != (count, 3):
            raise PointFileError(f"{path}: colors must have shape ({count}, 3), not {colors.shape}")
    if features is not None:
        features = np.asarray(features)
        if features.ndim == 1:
            features = features[:, None]
        if features.ndim != 2 or features.shape[0] != count:
            raise PointFileError(
                f"{path}: features must have shape ({count}, D), not {features.shape}"
            )
        if not np.issubdtype(features.dtype, np.number):
            raise PointFileError(f"{path}: features are not numbers (dtype {features.dtype})")
        features = features.astype(np.float32)
    keep = np.isfinite(points).all(axis=1)
    if features is not None:
        keep &= np.isfinite(features).all(axis=1)
    source_index = np.flatnonzero(keep).astype(np.int64)
    if source_index.shape[0] == 0:
        raise PointFileError(f"{path}: no finite points (the file has {count} rows)")
    farthest = np.abs(points[keep]).max(axis=1)
    if farthest.max() > MAX_COORDINATE:
        at = int(np.argmax(farthest))
        raise PointFileError(
            f"{path}: sole_ros reads points up to {MAX_COORDINATE:g} m from the origin along each "
            f"axis; this file has one at {farthest[at]:.6g} m (row {int(source_index[at])})"
        )
    return PointFile(
        points=points[keep],
        colors=None if colors is None else colors[keep],
        features=None if features is None else features[keep],
        source_index=source_index,
        num_input=count,
        path=path,
    )


def _colors_to_unit(colors: np.ndarray, path: str) -> np.ndarray:
    """Colours as float32 0..1: integers scaled by their type's maximum, floats by 1 or 255."""
    if np.issubdtype(colors.dtype, np.integer):
        return (colors.astype(np.float32) / np.float32(np.iinfo(colors.dtype).max)).clip(0, 1)
    if not np.issubdtype(colors.dtype, np.floating):
        raise PointFileError(f"{path}: colors are not numbers (dtype {colors.dtype})")
    colors = np.nan_to_num(colors.astype(np.float32), nan=0.5, posinf=1.0, neginf=0.0)
    # Float colours are 0..1 by convention, but some writers store 0..255 in floats.
    if colors.size and colors.max() > 1.0:
        colors = colors / np.float32(255.0)
    return colors.clip(0.0, 1.0)


# --- PLY -----------------------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
# What the writer names each numpy type (the PLY 1.0 names every reader knows).
_PLY_NAME_OF_CODE = {
    "i1": "char",
    "u1": "uchar",
    "i2": "short",
    "u2": "ushort",
    "i4": "int",
    "u4": "uint",
    "f4": "float",
    "f8": "double",
}
_PLY_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
_FEATURE_NAME = re.compile(r"^(?:feature|feat)_(\d+)$")
_MAX_HEADER_BYTES = 1 << 20


@dataclass
class _PlyElement:
    name: str
    count: int
    properties: list  # (name, numpy type code) or (name, ("list", count type, item type))


def _parse_ply_header(f, path: str) -> tuple[str, list[_PlyElement]]:
    if f.readline().strip() != b"ply":
        raise PointFileError(f"{path}: not a PLY file (it does not start with 'ply')")
    fmt = None
    elements: list[_PlyElement] = []
    read = 0
    while True:
        raw = f.readline()
        read += len(raw)
        if not raw or read > _MAX_HEADER_BYTES:
            raise PointFileError(f"{path}: PLY header has no end_header")
        words = raw.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _PLY_FORMATS:
                raise PointFileError(f"{path}: unknown PLY format {' '.join(words[1:])!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise PointFileError(f"{path}: bad PLY element line {raw.strip()!r}")
            elements.append(_PlyElement(words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise PointFileError(f"{path}: PLY property before any element")
            if len(words) == 5 and words[1] == "list":
                if words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
                    raise PointFileError(f"{path}: unknown PLY type in {raw.strip()!r}")
                elements[-1].properties.append(
                    (words[4], ("list", _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
                )
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1].properties.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise PointFileError(f"{path}: bad PLY property line {raw.strip()!r}")
        else:
            raise PointFileError(f"{path}: unexpected PLY header line {raw.strip()!r}")
    if fmt is None:
        raise PointFileError(f"{path}: PLY header has no format line")
    return fmt, elements


def _read_ply(path: str, max_points: int | None = None):
    with open(path, "rb") as f:
        fmt, elements = _parse_ply_header(f, path)
        vertex_at = next((i for i, e in enumerate(elements) if e.name == "vertex"), None)
        if vertex_at is None:
            raise PointFileError(f"{path}: PLY file has no 'vertex' element")
        vertex = elements[vertex_at]
        if any(isinstance(t, tuple) for _, t in vertex.properties):
            raise PointFileError(f"{path}: PLY vertex element has list properties (unsupported)")
        names = [n for n, _ in vertex.properties]
        missing = [a for a in "xyz" if a not in names]
        if missing:
            raise PointFileError(
                f"{path}: PLY vertex element has no {', '.join(missing)} "
                f"(properties: {', '.join(names) or 'none'})"
            )
        data_bytes = os.fstat(f.fileno()).st_size - f.tell()
        if fmt == "ascii":
            table = _read_ply_ascii(f, elements, vertex_at, data_bytes, path, max_points)
        else:
            table = _read_ply_binary(
                f, elements, vertex_at, _PLY_FORMATS[fmt], data_bytes, path, max_points
            )
    points = np.stack([table[a] for a in "xyz"], axis=1)
    colors = None
    colour_names = next(
        (c for c in (("red", "green", "blue"), ("r", "g", "b")) if all(n in names for n in c)), None
    )
    if colour_names is not None:
        colors = np.stack([table[n] for n in colour_names], axis=1)
    feature_columns = sorted((int(m.group(1)), n) for n in names if (m := _FEATURE_NAME.match(n)))
    features = None
    if feature_columns:
        features = np.stack([table[n].astype(np.float32) for _, n in feature_columns], axis=1)
    return points, colors, features


def _declared(elements: list[_PlyElement]) -> str:
    return ", ".join(f"element {e.name} {e.count}" for e in elements)  # as the header says it


def _read_ply_ascii(
    f,
    elements: list[_PlyElement],
    vertex_at: int,
    data_bytes: int,
    path: str,
    max_points: int | None,
) -> np.ndarray:
    # One line per element instance. A line of k numbers takes at least 2k bytes ("0 0 0\n"), so
    # counts the data has no room for are refused before anything is read or allocated.
    shortest = sum(e.count * 2 * max(1, len(e.properties)) for e in elements)
    if shortest > data_bytes:
        raise PointFileError(
            f"{path}: PLY file is truncated: its header declares {_declared(elements)}, "
            f"which need at least {shortest} bytes; {data_bytes} follow the header"
        )
    vertex = elements[vertex_at]
    _check_count(path, vertex.count, max_points)
    for element in elements[:vertex_at]:
        for _ in range(element.count):
            if not f.readline():
                raise PointFileError(f"{path}: PLY file ends inside element {element.name!r}")
    dtype = np.dtype([(n, t) for n, t in vertex.properties])
    lines = [f.readline() for _ in range(vertex.count)]
    present = sum(1 for line in lines if line.strip())
    if present < vertex.count:
        raise PointFileError(
            f"{path}: PLY file is truncated: its header declares {vertex.count} vertices, "
            f"the file has {present} vertex lines"
        )
    after = elements[vertex_at + 1 :]
    rest = sum(1 for line in f if line.strip())
    expected = sum(e.count for e in after)
    if rest != expected:
        what = f"{expected} lines of {_declared(after)}" if after else "nothing"
        if rest < expected:
            raise PointFileError(
                f"{path}: PLY file is truncated: after its {vertex.count} vertices the header "
                f"declares {what}, the file has {rest} lines"
            )
        raise PointFileError(
            f"{path}: PLY file holds more data than its header declares: after its "
            f"{vertex.count} vertices it declares {what}, the file has {rest} more lines"
        )
    try:
        values = (
            np.array([line.split() for line in lines], dtype=np.float64)
            if lines
            else np.zeros((0, len(vertex.properties)))
        )
    except ValueError:
        raise PointFileError(
            f"{path}: PLY vertex lines are not {len(vertex.properties)} numbers each"
        ) from None
    if values.ndim != 2 or values.shape[1] != len(vertex.properties):
        raise PointFileError(
            f"{path}: PLY vertex lines are not {len(vertex.properties)} numbers each"
        )
    table = np.empty(vertex.count, dtype=dtype)
    for i, (name, _) in enumerate(vertex.properties):
        table[name] = values[:, i]
    return table


def _read_ply_binary(
    f,
    elements: list[_PlyElement],
    vertex_at: int,
    order: str,
    data_bytes: int,
    path: str,
    max_points: int | None,
) -> np.ndarray:
    vertex = elements[vertex_at]
    before = 0
    for element in elements[:vertex_at]:
        if any(isinstance(t, tuple) for _, t in element.properties):
            raise PointFileError(
                f"{path}: binary PLY with a list element {element.name!r} before the "
                "vertices is not supported"
            )
        before += np.dtype([(n, order + t) for n, t in element.properties]).itemsize * element.count
    dtype = np.dtype([(n, order + t) for n, t in vertex.properties])
    size = dtype.itemsize * vertex.count
    # Sizes follow from the header alone: compared with the file before anything is read, so a
    # count of 2**62 costs nothing.
    if before + size > data_bytes:
        have = max(0, data_bytes - before)
        raise PointFileError(
            f"{path}: PLY file is truncated: its header declares {vertex.count} vertices of "
            f"{dtype.itemsize} bytes ({size} bytes), {have} bytes of them follow the header "
            f"({have // dtype.itemsize} vertices)"
        )
    after = elements[vertex_at + 1 :]
    fixed = 0  # bytes of the elements after the vertices; lists: at least their count fields
    exact = True
    for element in after:
        width = 0
        for _, kind in element.properties:
            if isinstance(kind, tuple):
                exact = False
                width += np.dtype(kind[1]).itemsize
            else:
                width += np.dtype(kind).itemsize
        fixed += width * element.count
    left = data_bytes - before - size
    if left < fixed:
        raise PointFileError(
            f"{path}: PLY file is truncated: after its {vertex.count} vertices the header "
            f"declares {_declared(after)} ({'at least ' if not exact else ''}{fixed} bytes), "
            f"{left} bytes follow"
        )
    _check_count(path, vertex.count, max_points)
    f.seek(before, os.SEEK_CUR)
    data = f.read(size)
    if len(data) != size:
        raise PointFileError(
            f"{path}: PLY file is truncated: {vertex.count} vertices need {size} bytes, "
            f"{len(data)} remain"
        )
    if exact and left > fixed:
        f.seek(fixed, os.SEEK_CUR)
        declared = f"{vertex.count} vertices of {dtype.itemsize} bytes"
        if after:
            declared += f", then {_declared(after)}"
        _check_rest(path, "PLY", f, left - fixed, declared)
    return np.frombuffer(data, dtype=dtype)


def write_ply(path, points, colors=None, **scalars) -> str:
    """A binary little-endian PLY of points with uint8 colours and extra per-point scalars.

    ``colors`` (N,3) uint8 (or float 0..1); each keyword (e.g. ``instance=int32 array``) becomes a
    vertex property of its own dtype. Written atomically (temporary file, then renamed).
    """
    path = os.fspath(path)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise PointFileError(f"{path}: points must have shape (N, 3), not {points.shape}")
    count = points.shape[0]
    columns: list[tuple[str, np.ndarray]] = [(a, points[:, i]) for i, a in enumerate("xyz")]
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (count, 3):
            raise PointFileError(f"{path}: colors must have shape ({count}, 3), not {colors.shape}")
        if colors.dtype != np.uint8:
            colors = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
        columns += [(n, colors[:, i]) for i, n in enumerate(("red", "green", "blue"))]
    for name, values in scalars.items():
        values = np.asarray(values)
        if values.shape != (count,):
            raise PointFileError(f"{path}: {name} must have shape ({count},), not {values.shape}")
        if values.dtype.kind == "b":
            values = values.astype(np.uint8)
        if values.dtype.str[1:] not in _PLY_NAME_OF_CODE:
            values = values.astype(np.float64 if values.dtype.kind == "f" else np.int32)
        columns.append((name, values))
    dtype = np.dtype([(n, "<" + v.dtype.str[1:]) for n, v in columns])
    table = np.empty(count, dtype=dtype)
    for name, values in columns:
        table[name] = values
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by sole_ros",
        f"element vertex {count}",
    ]
    header += [f"property {_PLY_NAME_OF_CODE[v.dtype.str[1:]]} {n}" for n, v in columns]
    header.append("end_header")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(table.tobytes())
        os.replace(tmp, path)
    except OSError as error:
        raise PointFileError(f"{path}: cannot write: {_one_line(error)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --- PCD -----------------------------------------------------------------------------------------

_PCD_MAX_HEADER_LINES = 64


def _pcd_header(f, path: str) -> dict:
    """The header's fields (upper-case keys -> words) up to its DATA line; the file is left at the data."""
    header: dict = {}
    for _ in range(_PCD_MAX_HEADER_LINES):
        raw = f.readline(4096)
        if not raw:
            break
        words = raw.decode("ascii", errors="replace").split()
        if not words or words[0].startswith("#"):
            continue
        header[words[0].upper()] = words[1:]
        if words[0].upper() == "DATA":
            return header
    raise PointFileError(f"{path}: PCD header has no DATA line")


def _pcd_int(header: dict, key: str, path: str, default: int | None = None) -> int:
    words = header.get(key)
    if words is None and default is not None:
        return default
    if not words or not words[0].isdigit():
        raise PointFileError(f"{path}: PCD header has no valid {key} (a whole number of 0 or more)")
    return int(words[0])


def _check_pcd(f, path: str, max_points: int | None) -> int:
    """Check what the header declares against the data before pypcd4 reads it: POINTS against
    WIDTH x HEIGHT, against max_points, and the bytes of binary data against POINTS x the record
    size. Returns POINTS."""
    header = _pcd_header(f, path)
    width, height = _pcd_int(header, "WIDTH", path), _pcd_int(header, "HEIGHT", path, 1)
    points = _pcd_int(header, "POINTS", path, width * height)
    if points != width * height:
        raise PointFileError(
            f"{path}: PCD header declares POINTS {points} but WIDTH x HEIGHT = "
            f"{width} x {height} = {width * height}"
        )
    kind = (header["DATA"] or [""])[0].lower()
    fields = header.get("FIELDS", [])
    sizes = header.get("SIZE", [])
    counts = header.get("COUNT", ["1"] * len(fields))
    if (
        not fields
        or len(sizes) != len(fields)
        or len(counts) != len(fields)
        or not all(w.isdigit() for w in sizes + counts)
    ):
        raise PointFileError(
            f"{path}: PCD header's FIELDS, SIZE and COUNT do not match "
            f"({len(fields)}, {len(sizes)} and {len(counts)} entries)"
        )
    record = sum(int(a) * int(b) for a, b in zip(sizes, counts))
    need = points * record
    data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    declared = f"POINTS {points} of {record} bytes ({need} bytes)"
    if kind == "binary":
        if data_bytes < need:
            raise PointFileError(
                f"{path}: cannot read PCD file: truncated: its header declares {declared}, "
                f"{data_bytes} bytes follow it ({data_bytes // max(record, 1)} points)"
            )
        f.seek(need, os.SEEK_CUR)
        _check_rest(path, "PCD", f, data_bytes - need, f"{declared}")
    elif kind in ("binary_compressed", "binaryscompressed"):
        if data_bytes < 8:
            raise PointFileError(
                f"{path}: cannot read PCD file: truncated: no compressed block after the header"
            )
        compressed, unpacked = struct.unpack("<II", f.read(8))
        if unpacked != need:
            raise PointFileError(
                f"{path}: PCD header declares {declared}, but its compressed block unpacks to "
                f"{unpacked} bytes ({unpacked / max(record, 1):.6g} points)"
            )
        if compressed > data_bytes - 8:
            raise PointFileError(
                f"{path}: cannot read PCD file: truncated: its compressed block is {compressed} "
                f"bytes, {data_bytes - 8} follow its size fields"
            )
        # Bytes after the block are not checked: PCL pads these files with zeros, and the block's
        # unpacked size, compared above, already counts the points.
    elif kind == "ascii":
        # a line of n values takes at least 2n bytes: counts with no room are refused before reading
        values = sum(int(c) for c in counts)
        if points * 2 * values > data_bytes:
            raise PointFileError(
                f"{path}: cannot read PCD file: truncated: its header declares POINTS {points}, "
                f"{data_bytes} bytes follow it, room for at most {data_bytes // (2 * values)} lines"
            )
    _check_count(path, points, max_points)
    return points


def _read_pcd(path: str, max_points: int | None = None):
    try:
        from pypcd4 import PointCloud
    except ImportError:
        raise PointFileError(
            f"{path}: reading .pcd needs the pypcd4 package (pip install pypcd4)"
        ) from None
    with open(path, "rb") as f:
        if not f.read(512).lstrip().startswith((b"#", b"VERSION", b"FIELDS")):
            raise PointFileError(f"{path}: not a PCD file (no PCD header)")
        f.seek(0)
        declared = _check_pcd(f, path, max_points)
    try:
        cloud = PointCloud.from_path(path)
        table = cloud.pc_data
    except PointFileError:
        raise
    except Exception as error:  # noqa: BLE001 - pypcd4 raises many kinds on a corrupt file
        raise PointFileError(f"{path}: cannot read PCD file: {_one_line(error)}") from None
    if table.size != declared:  # ascii lines are counted only by reading them
        what = "truncated" if table.size < declared else "more data than its header declares"
        raise PointFileError(
            f"{path}: cannot read PCD file: {what}: its header declares POINTS {declared}, "
            f"the file holds {table.size}"
        )
    names = table.dtype.names or ()
    missing = [a for a in "xyz" if a not in names]
    if missing:
        raise PointFileError(
            f"{path}: PCD file has no {', '.join(missing)} field (fields: {', '.join(names)})"
        )
    points = np.stack([np.asarray(table[a], dtype=np.float64).reshape(-1) for a in "xyz"], axis=1)
    colors = None
    packed_name = next((n for n in ("rgb", "rgba") if n in names), None)
    if packed_name is not None:
        packed = np.ascontiguousarray(table[packed_name]).reshape(-1)
        if packed.dtype.itemsize != 4:
            raise PointFileError(f"{path}: PCD field {packed_name!r} is not a packed 4-byte colour")
        packed = packed.view(np.uint32)  # float32 or uint32: only the bits matter
        colors = np.stack(
            [(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1
        ).astype(np.uint8)
    return points, colors, None


# --- NPZ -----------------------------------------------------------------------------------------


def _npy_shape(archive: zipfile.ZipFile, name: str, path: str) -> tuple:
    """The shape an array of the archive declares, checked against the bytes the archive holds
    for it, without reading the array (numpy allocates the declared shape before reading)."""
    info = archive.getinfo(name + ".npy")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise PointFileError(
                f"{path}: NPZ array {name!r} has an unknown .npy version {version}"
            )
        header = f.tell()
    size = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and header + size != info.file_size:
        raise PointFileError(
            f"{path}: NPZ array {name!r} declares shape {shape} of {dtype} ({size} bytes), "
            f"the archive holds {info.file_size - header} bytes for it"
        )
    return shape


def _read_npz(path: str, max_points: int | None = None):
    if not zipfile.is_zipfile(path):
        raise PointFileError(f"{path}: not an NPZ file (not a zip archive of .npy arrays)")
    with zipfile.ZipFile(path) as archive:
        arrays = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if "points" not in arrays:
            raise PointFileError(
                f"{path}: NPZ file has no 'points' array (arrays: {', '.join(arrays) or 'none'})"
            )
        shapes = {
            n: _npy_shape(archive, n, path) for n in ("points", "colors", "features") if n in arrays
        }
    rows = shapes["points"][0] if shapes["points"] else 1
    _check_count(path, rows, max_points)
    for name, shape in shapes.items():  # before loading: rows of every array must agree
        if name != "points" and (not shape or shape[0] != rows):
            raise PointFileError(
                f"{path}: {name} must have shape ({rows}, {'3' if name == 'colors' else 'D'}), "
                f"not {shape}"
            )
    # allow_pickle=False: an .npz holding pickled objects is refused instead of executed.
    with np.load(path, allow_pickle=False) as data:
        points = data["points"]
        colors = data["colors"] if "colors" in data.files else None
        features = data["features"] if "features" in data.files else None
    return points, colors, features


# --- downsampling --------------------------------------------------------------------------------


def voxel_downsample(scene: PointFile, voxel: float) -> PointFile:
    """The first point (in file order) of each cube of edge ``voxel`` metres; ``source_index``
    still names each kept point's row in the file, and ``num_input`` stays the file's row count."""
    voxel = float(voxel)
    if not (math.isfinite(voxel) and voxel >= 1e-6):  # smaller cells overflow int64 cell indices
        raise ValueError(f"the voxel size must be at least 1e-6 m, not {voxel}")
    cells = np.floor(scene.points / voxel).astype(np.int64)
    cells -= cells.min(axis=0)
    extent = cells.max(axis=0) + 1
    if math.prod(int(e) for e in extent) < 2**62:
        # one integer per cell (fast); stable sort, so each cell's first point is the one kept
        key = (cells[:, 0] * int(extent[1]) + cells[:, 1]) * int(extent[2]) + cells[:, 2]
        _, first = np.unique(key, return_index=True)
    else:
        _, first = np.unique(cells, axis=0, return_index=True)
    first = np.sort(first)
    return PointFile(
        points=scene.points[first],
        colors=None if scene.colors is None else scene.colors[first],
        features=None if scene.features is None else scene.features[first],
        source_index=scene.source_index[first],
        num_input=scene.num_input,
        path=scene.path,
    )
