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
import struct
import threading
import zlib

import numpy as np

from .errors import MapFileError

MAGIC = b"SOLEMAP\n"
FORMAT_NAME = "sole_ros.voxel_map"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 1 << 24
_ALLOWED_DTYPES = {"<i8", "<f4", "<u4", "<f8", "<f2", "|b1"}
_counter = itertools.count()


def temporary_path(path: pathlib.Path) -> pathlib.Path:
    """Unique per process, thread and call, so concurrent saves never share a temporary file."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}-{next(_counter)}")


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
        entries.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                        "offset": offset, "nbytes": int(array.nbytes),
                        "crc32": zlib.crc32(_bytes_of(array))})
        offset += int(array.nbytes)
    full_header = {**header, "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                   "arrays": entries, "payload_bytes": offset}
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


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise MapFileError(f"{path}: cannot read ({error.strerror or error})") from None
    if not data.startswith(MAGIC):
        raise MapFileError(f"{path}: not a sole_ros voxel map file (bad magic)")
    if len(data) < len(MAGIC) + 4:
        raise MapFileError(f"{path}: truncated header")
    (header_length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    if header_length > _MAX_HEADER_BYTES or start + header_length > len(data):
        raise MapFileError(f"{path}: truncated or corrupt header (length {header_length})")
    try:
        header = json.loads(data[start:start + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MapFileError(f"{path}: corrupt header ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise MapFileError(f"{path}: not a {FORMAT_NAME} file (format {header.get('format') if isinstance(header, dict) else None!r})")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise MapFileError(f"{path}: format version {version!r} is not supported (this code reads {FORMAT_VERSION})")
    payload = memoryview(data)[start + header_length:]
    if header.get("payload_bytes") != len(payload):
        raise MapFileError(f"{path}: payload is {len(payload)} bytes, header says {header.get('payload_bytes')} "
                           "(truncated or corrupt file)")
    arrays = {}
    try:
        for entry in header["arrays"]:
            name, dtype, shape = str(entry["name"]), str(entry["dtype"]), tuple(int(s) for s in entry["shape"])
            offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
            if dtype not in _ALLOWED_DTYPES or any(s < 0 for s in shape):
                raise MapFileError(f"{path}: array {name} has unsupported dtype {dtype} or shape {shape}")
            if nbytes != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize or \
                    offset < 0 or offset + nbytes > len(payload):
                raise MapFileError(f"{path}: array {name} does not fit the payload")
            chunk = payload[offset:offset + nbytes]
            if zlib.crc32(chunk) != int(entry["crc32"]):
                raise MapFileError(f"{path}: array {name} fails its checksum (corrupt file)")
            arrays[name] = np.frombuffer(chunk, dtype=np.dtype(dtype)).reshape(shape)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, MapFileError):
            raise
        raise MapFileError(f"{path}: corrupt array table ({error})") from None
    header["_path"] = str(path)
    return header, arrays
