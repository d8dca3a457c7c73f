"""The voxel map file: a versioned, checksummed container of named arrays, written atomically.

Layout: 8-byte magic, uint32 little-endian length of a UTF-8 JSON header, the header, then the
raw arrays back to back. The header names the format and its version, and for every array its
dtype, shape, byte offset in the payload and CRC-32, so a truncated or altered file is refused on
load instead of producing a wrong map.

Atomicity: the file is written to a temporary name in the same folder, flushed and fsync'ed, then
renamed over the target (rename is atomic on POSIX and Windows); a crash at any point leaves the
previous file untouched (plus, at worst, a stray temporary file starting with '.').
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import re
import stat
import struct
import threading
import zlib

import numpy as np

from .errors import MapFileError, shown

MAGIC = b"SOLEMAP\n"
FORMAT_NAME = "sole_ros.voxel_map"
FORMAT_VERSION = 1
_ALLOWED_DTYPES = {"<i8", "<f4", "<u4", "<f8", "<f2", "|b1"}
_counter = itertools.count()


def temporary_path(path: pathlib.Path) -> pathlib.Path:
    """Unique per process, thread and call, so concurrent saves never share a temporary file."""
    return path.with_name(
        f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}-{next(_counter)}"
    )


def write(path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    path = pathlib.Path(path)
    entries = []
    offset = 0
    contiguous = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        contiguous[name] = array
        entries.append(
            {
                "name": name,
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": int(array.nbytes),
                "crc32": zlib.crc32(_bytes_of(array)),
            }
        )
        offset += int(array.nbytes)
    full_header = {
        **header,
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arrays": entries,
        "payload_bytes": offset,
    }
    header_bytes = json.dumps(full_header).encode("utf-8")
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as out:
            out.write(MAGIC)
            out.write(struct.pack("<I", len(header_bytes)))
            out.write(header_bytes)
            for array in contiguous.values():
                out.write(_bytes_of(array))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
        raise
    _sync_folder(path.parent)


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """The raw bytes of a C-contiguous array as a flat uint8 view (works for empty arrays too)."""
    return array.reshape(-1).view(np.uint8)


def _sync_folder(folder: pathlib.Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


# Limits a file must keep before anything it declares is believed.
MAX_HEADER_BYTES = 1 << 20  # a real header is a few kB: settings and one entry per array
MAX_HEADER_DEPTH = 8  # a real header nests 4 deep (header > arrays > entry > shape)
MAX_ARRAYS = 64
# Opening for reading never blocks (a named pipe) and never follows a final link.
READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)
)
MAX_DIMENSION = 1 << 40  # any one axis of any array


def read(path, max_bytes: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a map file, or MapFileError with the reason; never another exception.

    Only a regular file is read: it is opened without following a final link and without
    blocking (a named pipe cannot hold the caller), checked with fstat, and refused when larger
    than ``max_bytes``. The header is bounded in size and nesting, refuses NaN/Infinity, and every
    number in the array table is an integer within range before any array is cut out.
    """
    path = pathlib.Path(path)
    try:
        data = _read_regular_file(path, max_bytes)
        return _parse(path, data)
    except MapFileError:
        raise
    except Exception as error:  # noqa: BLE001 - a crafted file may fail in any way: all are refusals
        raise MapFileError(
            f"{path}: unreadable map file ({type(error).__name__}: {error})"
        ) from None


def _read_regular_file(path: pathlib.Path, max_bytes: int | None) -> bytes:
    try:
        handle = os.open(path, READ_FLAGS)
    except OSError as error:
        raise MapFileError(f"{path}: cannot open ({error.strerror or error})") from None
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode):
            raise MapFileError(
                f"{path}: not a regular file (a device, pipe, socket or folder): refused"
            )
        if max_bytes is not None and status.st_size > max_bytes:
            raise MapFileError(
                f"{path}: {status.st_size} bytes, more than the {max_bytes} bytes a map of "
                "this node's size (scene.max_voxels) can need: refused"
            )
        chunks, remaining = [], status.st_size
        while remaining > 0:  # read no more than fstat said, whatever the file does meanwhile
            chunk = os.read(handle, min(remaining, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError as error:
        raise MapFileError(f"{path}: cannot read ({error.strerror or error})") from None
    finally:
        os.close(handle)


def _refuse_constant(name: str):
    raise MapFileError(f"header holds {name}: numbers must be finite")


def _nesting_depth(text: str) -> int:
    """Deepest [ / { nesting outside strings, found without recursion (so a crafted header cannot
    exhaust the parser's stack before it is measured)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    depth = deepest = 0
    for char in without_strings:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _integer(value, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MapFileError(f"{name} must be an integer in {low}..{high}, got {shown(value)}")
    return value


def _parse(path: pathlib.Path, data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    if not data.startswith(MAGIC):
        raise MapFileError(f"{path}: not a sole_ros voxel map file (bad magic)")
    if len(data) < len(MAGIC) + 4:
        raise MapFileError(f"{path}: truncated header")
    (header_length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if header_length > MAX_HEADER_BYTES or start + header_length > len(data):
        raise MapFileError(f"{path}: truncated or corrupt header (length {header_length})")
    try:
        text = data[start : start + header_length].decode("utf-8")
        if _nesting_depth(text) > MAX_HEADER_DEPTH:
            raise MapFileError(f"header nests deeper than {MAX_HEADER_DEPTH} levels")
        header = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, MapFileError) as error:
        raise MapFileError(f"{path}: corrupt header ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise MapFileError(
            f"{path}: not a {FORMAT_NAME} file (format "
            f"{shown(header.get('format')) if isinstance(header, dict) else 'none'})"
        )
    version = header.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise MapFileError(
            f"{path}: format version {shown(version)} is not supported "
            f"(this code reads {FORMAT_VERSION})"
        )
    payload = memoryview(data)[start + header_length :]
    if header.get("payload_bytes") != len(payload):
        raise MapFileError(
            f"{path}: payload is {len(payload)} bytes, header says "
            f"{shown(header.get('payload_bytes'))} (truncated or corrupt file)"
        )
    table = header.get("arrays")
    if not isinstance(table, list) or len(table) > MAX_ARRAYS:
        raise MapFileError(
            f"{path}: corrupt array table (not a list of at most {MAX_ARRAYS} entries)"
        )
    arrays = {}
    try:
        for entry in table:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise MapFileError("an entry is not a named array")
            name, dtype, shape = entry["name"], entry.get("dtype"), entry.get("shape")
            if name in arrays:
                raise MapFileError(f"array {shown(name)} appears twice")
            if dtype not in _ALLOWED_DTYPES or not isinstance(shape, list) or len(shape) > 4:
                raise MapFileError(
                    f"array {shown(name)} has unsupported dtype {shown(dtype, 20)} or shape"
                )
            shape = tuple(
                _integer(s, f"array {shown(name)} shape", 0, MAX_DIMENSION) for s in shape
            )
            offset = _integer(entry.get("offset"), f"array {shown(name)} offset", 0, len(payload))
            nbytes = _integer(entry.get("nbytes"), f"array {shown(name)} nbytes", 0, len(payload))
            crc = _integer(entry.get("crc32"), f"array {shown(name)} crc32", 0, 0xFFFFFFFF)
            count = 1
            for s in shape:  # Python integers: no overflow on a crafted shape
                count *= s
            if nbytes != count * np.dtype(dtype).itemsize or offset + nbytes > len(payload):
                raise MapFileError(f"array {shown(name)} does not fit the payload")
            chunk = payload[offset : offset + nbytes]
            if zlib.crc32(chunk) != crc:
                raise MapFileError(f"array {shown(name)} fails its checksum (corrupt file)")
            arrays[name] = np.frombuffer(chunk, dtype=np.dtype(dtype)).reshape(shape)
    except MapFileError as error:
        raise MapFileError(f"{path}: {error}") from None
    header["_path"] = str(path)
    return header, arrays
