"""Property-based tests of the point file readers: any mutation of a valid PLY, PCD or NPZ file's
bytes either reads back as points that are self-consistent, or is refused with PointFileError;
never another exception, and never more memory than the file's size justifies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fuzzing import fuzz_settings
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from memory_bound import traced

from sole_ros.pointfiles import MAX_COORDINATE, PointFileError, read_point_file, write_ply

FUZZ = fuzz_settings(80, suppress_health_check=[HealthCheck.function_scoped_fixture])
RNG = np.random.default_rng(3)
XYZ = RNG.uniform(-2, 2, (200, 3)).astype(np.float32)
RGB = RNG.integers(0, 256, (200, 3)).astype(np.uint8)


def _ascii_ply() -> bytes:
    header = (
        "ply\nformat ascii 1.0\nelement vertex 200\nproperty float x\nproperty float y\n"
        "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    rows = "".join(f"{x} {y} {z} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(XYZ, RGB))
    return (header + rows).encode()


def _pcd(encoding) -> bytes:
    from pypcd4 import PointCloud

    rgb = PointCloud.encode_rgb(RGB)
    cloud = PointCloud.from_xyzrgb_points(np.hstack([XYZ, rgb[:, None]]))
    out = io.BytesIO()
    cloud.save(out, encoding=encoding)
    return out.getvalue()


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    from pypcd4 import Encoding

    folder = tmp_path_factory.mktemp("fuzz")
    write_ply(folder / "binary.ply", XYZ, RGB)
    buffer = io.BytesIO()
    np.savez(buffer, points=XYZ, colors=RGB, features=RNG.normal(size=(200, 4)).astype(np.float32))
    files = {
        "binary.ply": (folder / "binary.ply").read_bytes(),
        "ascii.ply": _ascii_ply(),
        "binary.pcd": _pcd(Encoding.BINARY),
        "ascii.pcd": _pcd(Encoding.ASCII),
        "compressed.pcd": _pcd(Encoding.BINARY_COMPRESSED),
        "scene.npz": buffer.getvalue(),
    }
    for name, data in files.items():  # each is valid before it is mutated
        (folder / name).write_bytes(data)
        assert len(read_point_file(folder / name)) == 200, name
    return files


def _read_bounded(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return traced(lambda: read_point_file(path), PointFileError)


def _assert_consistent(outcome, peak: int, size: int):
    # ascii rows parse into float64 tables: allow a generous multiple of the file, never more
    assert peak < 64 * size + (4 << 20), f"{peak} bytes traced for a {size}-byte file"
    if isinstance(outcome, str):
        assert outcome and "\n" not in outcome
        return
    n = len(outcome)
    assert outcome.points.shape == (n, 3) and np.all(np.isfinite(outcome.points))
    assert np.all(np.abs(outcome.points) <= MAX_COORDINATE)
    assert outcome.source_index.shape == (n,) and np.all(np.diff(outcome.source_index) > 0)
    assert n == 0 or 0 <= outcome.source_index[0] and outcome.source_index[-1] < outcome.num_input
    if outcome.colors is not None:
        assert outcome.colors.shape == (n, 3) and np.all(
            (outcome.colors >= 0) & (outcome.colors <= 1)
        )
    if outcome.features is not None:
        assert outcome.features.shape[0] == n


NAMES = ["binary.ply", "ascii.ply", "binary.pcd", "ascii.pcd", "compressed.pcd", "scene.npz"]


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_point_files_read_consistently_or_are_refused(
    tmp_path, valid_files, name, edits, cut
):
    data = bytearray(valid_files[name])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    outcome, peak = _read_bounded(tmp_path, name, bytes(data))
    _assert_consistent(outcome, peak, max(len(data), 1))


@FUZZ
@given(
    name=st.sampled_from(["binary.ply", "ascii.ply", "binary.pcd", "ascii.pcd", "compressed.pcd"]),
    line=st.integers(min_value=0),
    text=st.sampled_from(
        [
            "4611686018427387904",
            "-1",
            "0",
            "1e30",
            "nan",
            "x",
            "",
            "99999999999999999999",
            "float",
            "uchar",
            "binary_big_endian 1.0",
            "binary_compressed",
        ]
    ),
)
def test_mutated_header_words_read_consistently_or_are_refused(
    tmp_path, valid_files, name, line, text
):
    """One word of the header (a count, a type, a format) replaced: counts of 2^62, negative,
    huge or not numbers at all, other types and encodings."""
    data = valid_files[name]
    end = data.index(b"end_header\n") + 11 if name.endswith(".ply") else data.index(b"DATA ")
    header_lines = data[:end].split(b"\n")
    index = line % len(header_lines)
    words = header_lines[index].split(b" ")
    words[-1] = text.encode()
    header_lines[index] = b" ".join(words)
    mutated = b"\n".join(header_lines) + data[end:]
    outcome, peak = _read_bounded(tmp_path, name, mutated)
    _assert_consistent(outcome, peak, len(mutated))
