"""Rewriting parts of a saved map file, for tests that craft damaged or hostile files."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np


def rewrite_header(path, change):
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12 : 12 + length])
    change(header)
    encoded = json.dumps(header).encode()
    path.write_bytes(data[:8] + struct.pack("<I", len(encoded)) + encoded + data[12 + length :])


def rewrite_header_text(path, change):
    """Like rewrite_header, on the header's JSON text (for what json.dumps would not write)."""
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 8)
    encoded = change(data[12 : 12 + length].decode()).encode()
    path.write_bytes(data[:8] + struct.pack("<I", len(encoded)) + encoded + data[12 + length :])


def duplicate_a_key(path):
    """Rewrite the keys array so two voxels share a key, with a valid checksum."""
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12 : 12 + length])
    entry = next(e for e in header["arrays"] if e["name"] == "keys")
    start = 12 + length + entry["offset"]
    keys = np.frombuffer(bytes(data[start : start + entry["nbytes"]]), dtype="<i8").copy()
    keys[1] = keys[0]
    data[start : start + entry["nbytes"]] = keys.tobytes()
    entry["crc32"] = zlib.crc32(keys.tobytes())
    encoded = json.dumps(header).encode()
    path.write_bytes(
        bytes(data[:8]) + struct.pack("<I", len(encoded)) + encoded + bytes(data[12 + length :])
    )
