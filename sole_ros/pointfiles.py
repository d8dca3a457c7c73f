"""Point-cloud files in and out: .ply, .pcd and .npz scenes for the command line and tools.

Every reader returns a ``PointFile``: finite points only, colours as float 0..1, optional per-point
features, and ``source_index`` mapping each kept point back to its row in the file, so results
can name the input's own point indices (organised PCD clouds mark missing returns with NaN).
Anything wrong with a file raises ``PointFileError`` whose message is one line.

Formats:
- PLY: ascii, binary_little_endian and binary_big_endian; the ``vertex`` element's x, y, z,
  optional red/green/blue (integer types scaled by their maximum, float taken as 0..1 or, when
  above 1, as 0..255), and per-vertex features named ``feature_<i>`` (also ``feat_<i>``).
- PCD (read with pypcd4): ascii, binary and binary_compressed; x, y, z and a packed ``rgb`` or
  ``rgba`` field (float32 or uint32 holding 0x(AA)RRGGBB).
- NPZ: ``points`` (N,3), optional ``colors`` (N,3) uint8 or float 0..1, ``features`` (N,D).
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass

import numpy as np

SUPPORTED_SUFFIXES = (".ply", ".pcd", ".npz")


class PointFileError(ValueError):
    """A point file that cannot be read or written; ``str(exc)`` is one line saying why."""


@dataclass
class PointFile:
    points: np.ndarray            # (N,3) float64, all finite
    colors: np.ndarray | None     # (N,3) float32 in 0..1
    features: np.ndarray | None   # (N,D) float32
    source_index: np.ndarray      # (N,) int64: row of each point in the file
    num_input: int                # rows in the file, before non-finite points were dropped
    path: str = ""

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_input_indices(self, indices) -> np.ndarray:
        """Indices into ``points`` -> indices into the file's rows."""
        return self.source_index[np.asarray(indices, dtype=np.int64)]


def read_point_file(path) -> PointFile:
    """Read a .ply, .pcd or .npz scene; PointFileError (one line) for anything unusable."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise PointFileError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if not os.path.isfile(path):
        raise PointFileError(f"{path}: no such file")
    reader = {".ply": _read_ply, ".pcd": _read_pcd, ".npz": _read_npz}[suffix]
    try:
        points, colors, features = reader(path)
    except PointFileError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise PointFileError(f"{path}: cannot read {suffix[1:].upper()} file: {_one_line(error)}") from None
    return _finish(path, points, colors, features)


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
            raise PointFileError(f"{path}: features must have shape ({count}, D), not {features.shape}")
        if not np.issubdtype(features.dtype, np.number):
            raise PointFileError(f"{path}: features are not numbers (dtype {features.dtype})")
        features = features.astype(np.float32)
    keep = np.isfinite(points).all(axis=1)
    if features is not None:
        keep &= np.isfinite(features).all(axis=1)
    source_index = np.flatnonzero(keep).astype(np.int64)
    if source_index.shape[0] == 0:
        raise PointFileError(f"{path}: no finite points (the file has {count} rows)")
    return PointFile(points=points[keep], colors=None if colors is None else colors[keep],
                     features=None if features is None else features[keep],
                     source_index=source_index, num_input=count, path=path)


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
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
# What the writer names each numpy type (the PLY 1.0 names every reader knows).
_PLY_NAME_OF_CODE = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
                     "i4": "int", "u4": "uint", "f4": "float", "f8": "double"}
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
                elements[-1].properties.append((words[4], ("list", _PLY_TYPES[words[2]], _PLY_TYPES[words[3]])))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1].properties.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise PointFileError(f"{path}: bad PLY property line {raw.strip()!r}")
        else:
            raise PointFileError(f"{path}: unexpected PLY header line {raw.strip()!r}")
    if fmt is None:
        raise PointFileError(f"{path}: PLY header has no format line")
    return fmt, elements


def _read_ply(path: str):
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
            raise PointFileError(f"{path}: PLY vertex element has no {', '.join(missing)} "
                                 f"(properties: {', '.join(names) or 'none'})")
        if fmt == "ascii":
            table = _read_ply_ascii(f, elements[:vertex_at], vertex, path)
        else:
            table = _read_ply_binary(f, elements[:vertex_at], vertex, _PLY_FORMATS[fmt], path)
    points = np.stack([table[a] for a in "xyz"], axis=1)
    colors = None
    colour_names = next((c for c in (("red", "green", "blue"), ("r", "g", "b")) if all(n in names for n in c)), None)
    if colour_names is not None:
        colors = np.stack([table[n] for n in colour_names], axis=1)
    feature_columns = sorted((int(m.group(1)), n) for n in names if (m := _FEATURE_NAME.match(n)))
    features = None
    if feature_columns:
        features = np.stack([table[n].astype(np.float32) for _, n in feature_columns], axis=1)
    return points, colors, features


def _read_ply_ascii(f, before: list[_PlyElement], vertex: _PlyElement, path: str) -> np.ndarray:
    # One line per element instance, so earlier elements (lists included) are skipped by lines.
    for element in before:
        for _ in range(element.count):
            if not f.readline():
                raise PointFileError(f"{path}: PLY file ends inside element {element.name!r}")
    dtype = np.dtype([(n, t) for n, t in vertex.properties])
    lines = [f.readline() for _ in range(vertex.count)]
    if vertex.count and not lines[-1]:
        raise PointFileError(f"{path}: PLY file ends before its {vertex.count} vertices")
    try:
        values = np.array([line.split() for line in lines], dtype=np.float64) if lines else \
            np.zeros((0, len(vertex.properties)))
    except ValueError:
        raise PointFileError(f"{path}: PLY vertex lines are not {len(vertex.properties)} numbers each") from None
    if values.ndim != 2 or values.shape[1] != len(vertex.properties):
        raise PointFileError(f"{path}: PLY vertex lines are not {len(vertex.properties)} numbers each")
    table = np.empty(vertex.count, dtype=dtype)
    for i, (name, _) in enumerate(vertex.properties):
        table[name] = values[:, i]
    return table


def _read_ply_binary(f, before: list[_PlyElement], vertex: _PlyElement, order: str, path: str) -> np.ndarray:
    for element in before:
        if any(isinstance(t, tuple) for _, t in element.properties):
            raise PointFileError(f"{path}: binary PLY with a list element {element.name!r} before the "
                                 "vertices is not supported")
        size = np.dtype([(n, order + t) for n, t in element.properties]).itemsize
        f.seek(size * element.count, os.SEEK_CUR)
    dtype = np.dtype([(n, order + t) for n, t in vertex.properties])
    data = f.read(dtype.itemsize * vertex.count)
    if len(data) != dtype.itemsize * vertex.count:
        raise PointFileError(f"{path}: PLY file is truncated: {vertex.count} vertices need "
                             f"{dtype.itemsize * vertex.count} bytes, {len(data)} remain")
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
    header = ["ply", "format binary_little_endian 1.0", "comment written by sole_ros", f"element vertex {count}"]
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

def _read_pcd(path: str):
    try:
        from pypcd4 import PointCloud
    except ImportError:
        raise PointFileError(f"{path}: reading .pcd needs the pypcd4 package (pip install pypcd4)") from None
    with open(path, "rb") as f:
        if not f.read(512).lstrip().startswith((b"#", b"VERSION", b"FIELDS")):
            raise PointFileError(f"{path}: not a PCD file (no PCD header)")
    try:
        cloud = PointCloud.from_path(path)
        table = cloud.pc_data
    except PointFileError:
        raise
    except Exception as error:  # noqa: BLE001 - pypcd4 raises many kinds on a corrupt file
        raise PointFileError(f"{path}: cannot read PCD file: {_one_line(error)}") from None
    names = table.dtype.names or ()
    missing = [a for a in "xyz" if a not in names]
    if missing:
        raise PointFileError(f"{path}: PCD file has no {', '.join(missing)} field (fields: {', '.join(names)})")
    points = np.stack([np.asarray(table[a], dtype=np.float64).reshape(-1) for a in "xyz"], axis=1)
    colors = None
    packed_name = next((n for n in ("rgb", "rgba") if n in names), None)
    if packed_name is not None:
        packed = np.ascontiguousarray(table[packed_name]).reshape(-1)
        if packed.dtype.itemsize != 4:
            raise PointFileError(f"{path}: PCD field {packed_name!r} is not a packed 4-byte colour")
        packed = packed.view(np.uint32)  # float32 or uint32: only the bits matter
        colors = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1).astype(np.uint8)
    return points, colors, None


# --- NPZ -----------------------------------------------------------------------------------------

def _read_npz(path: str):
    if not zipfile.is_zipfile(path):
        raise PointFileError(f"{path}: not an NPZ file (not a zip archive of .npy arrays)")
    # allow_pickle=False: an .npz holding pickled objects is refused instead of executed.
    with np.load(path, allow_pickle=False) as data:
        if "points" not in data.files:
            raise PointFileError(f"{path}: NPZ file has no 'points' array (arrays: {', '.join(data.files) or 'none'})")
        points = data["points"]
        colors = data["colors"] if "colors" in data.files else None
        features = data["features"] if "features" in data.files else None
    return points, colors, features
