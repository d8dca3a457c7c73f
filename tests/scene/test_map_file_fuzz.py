"""Property-based tests of the map file reader: any mutation of a valid file's bytes or header
either reads back as a map whose content is self-consistent, or is refused with MapFileError;
never another exception, and never more memory than the file's size justifies."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from fuzzing import fuzz_settings
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from memory_bound import traced

from sole_ros.scene import MapFileError, VoxelMap

FUZZ = fuzz_settings(150, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    voxel_map = VoxelMap(voxel_size=0.05, max_voxels=2_000, feature_dim=4)
    voxel_map.integrate_points(
        rng.uniform(-1, 1, (600, 3)),
        np.eye(4),
        colors=rng.integers(0, 256, (600, 3), dtype=np.uint8),
        stamp=5.0,
    )
    path = tmp_path_factory.mktemp("fuzz") / "valid.map"
    voxel_map.save(path)
    return path.read_bytes()


def _load_bounded(tmp_path, data: bytes):
    """Restore ``data`` into a fresh map the size of the one that wrote it; (outcome, peak bytes).
    The outcome is the map, or the refusal's message."""
    path = tmp_path / "mutated.map"
    path.write_bytes(data)
    target = VoxelMap(voxel_size=0.05, max_voxels=2_000, feature_dim=4)

    def restore():
        target.restore(path)
        return target

    return traced(restore, MapFileError)


def _assert_consistent(outcome, peak: int, size: int):
    # the file is read once, its arrays are views of it, restoring copies them into the store
    assert peak < 4 * size + (1 << 20), f"{peak} bytes traced for a {size}-byte file"
    if isinstance(outcome, str):
        assert outcome and "\n" not in outcome
        return
    snapshot = outcome.export()
    n = len(snapshot)
    assert snapshot.coords.shape == (n, 3) and np.all(np.isfinite(snapshot.coords))
    assert snapshot.colors.shape == (n, 3) and np.all(
        (snapshot.colors >= 0) & (snapshot.colors <= 1)
    )
    assert np.isfinite(outcome.stamp) and outcome.num_voxels == n <= 2_000


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_bytes_read_consistently_or_are_refused(tmp_path, valid_file, edits, cut):
    data = bytearray(valid_file)
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    outcome, peak = _load_bounded(tmp_path, bytes(data))
    _assert_consistent(outcome, peak, len(data))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from([2**63, -(2**63), 10**30, 2**62 + 1]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(tree, prefix=()):
    """Every key path of a JSON tree (dict keys and list indices)."""
    items = (
        tree.items()
        if isinstance(tree, dict)
        else enumerate(tree)
        if isinstance(tree, list)
        else ()
    )
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


@FUZZ
@given(choice=st.integers(min_value=0), value=JSON_VALUES)
def test_mutated_header_fields_read_consistently_or_are_refused(
    tmp_path, valid_file, choice, value
):
    """One header field (any depth: settings, version, stamp, an array's shape, offset or CRC)
    replaced by an arbitrary JSON value, NaN and huge integers included."""
    (length,) = struct.unpack_from("<I", valid_file, 8)
    header = json.loads(valid_file[12 : 12 + length])
    paths = list(_paths(header))
    path = paths[choice % len(paths)]
    parent = header
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    encoded = json.dumps(header).encode()
    data = valid_file[:8] + struct.pack("<I", len(encoded)) + encoded + valid_file[12 + length :]
    outcome, peak = _load_bounded(tmp_path, data)
    _assert_consistent(outcome, peak, len(data))
