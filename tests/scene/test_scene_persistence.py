"""VoxelMap save/load: round trip, atomic replacement (crash mid-write), corrupt files refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from map_file_support import duplicate_a_key, rewrite_header, rewrite_header_text
from scene_support import box_scene_depth, translation

from sole_ros.scene import MapFileError, VoxelMap, map_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def filled_map(seed=0, feature_dim=8, shift=0.0) -> VoxelMap:
    rng = np.random.default_rng(seed)
    voxel_map = VoxelMap(
        voxel_size=0.05,
        max_voxels=50_000,
        feature_dim=feature_dim,
        region_min=(-10, -10, -10),
        region_max=(10, 10, 10),
        keep_radius=8.0,
    )
    depth, K = box_scene_depth(camera_x=0.1)
    color = rng.integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    features = rng.normal(size=(6, 8, feature_dim)).astype(np.float32) if feature_dim else None
    voxel_map.integrate_rgbd(depth, K, translation(shift), color, stamp=3.0, features=features)
    voxel_map.integrate_points(rng.uniform(-1, 1, (2000, 3)), translation(shift, 0, 1), stamp=4.0)
    return voxel_map


def assert_same_content(a: VoxelMap, b: VoxelMap):
    sa, sb = a.export(), b.export()
    assert np.array_equal(sa.coords, sb.coords)
    assert np.array_equal(sa.colors, sb.colors)
    assert np.array_equal(sa.observations, sb.observations)
    if sa.features is not None:
        assert np.array_equal(sa.features, sb.features) and np.array_equal(
            sa.has_feature, sb.has_feature
        )
    assert sa.stamp == sb.stamp


def test_round_trip_keeps_content_settings_and_version(tmp_path):
    original = filled_map()
    assert original.stats()["voxels_with_features"] > 0
    path = tmp_path / "scene.map"
    original.save(path)
    loaded = VoxelMap.load(path)
    assert_same_content(original, loaded)
    assert loaded.version == original.version and loaded.settings() == original.settings()
    # A loaded map keeps working: same update on both gives the same result.
    for voxel_map in (original, loaded):
        voxel_map.integrate_points(
            np.array([[0.3, 0.3, 0.3]]), np.eye(4), np.array([[9, 9, 9]], np.uint8), stamp=5
        )
    assert_same_content(original, loaded)


def test_restore_in_place_moves_the_version_forward(tmp_path):
    saved = filled_map(seed=1)
    path = tmp_path / "scene.map"
    saved.save(path)
    target = filled_map(seed=2, shift=3.0)
    for _ in range(5):
        target.integrate_points(np.array([[0.0, 0.0, 1.0]]), np.eye(4))
    before = target.version
    target.restore(path)
    assert_same_content(saved, target)
    assert target.version > max(before, saved.version)
    with pytest.raises(MapFileError, match="do not match"):
        VoxelMap(voxel_size=0.1, feature_dim=8).restore(path)


def test_loading_more_voxels_than_the_bound_keeps_the_most_recent(tmp_path):
    big = VoxelMap(voxel_size=0.1)
    big.integrate_points(np.array([[0.05, 0.05, 0.05]]), np.eye(4), stamp=1.0)
    big.integrate_points(np.array([[1.05, 0.05, 0.05]]), np.eye(4), stamp=2.0)
    big.integrate_points(np.array([[2.05, 0.05, 0.05]]), np.eye(4), stamp=3.0)
    path = tmp_path / "big.map"
    big.save(path)
    small = VoxelMap(voxel_size=0.1, max_voxels=2)
    small.restore(path)
    assert small.num_voxels == 2
    assert np.allclose(np.sort(small.export().coords[:, 0]), [1.05, 2.05])


class _FailingFile:
    """Wraps the real file map_file opens; after `limit` bytes it fails (or stops the process)."""

    def __init__(self, real, limit, action):
        self.real, self.limit, self.action, self.written = real, limit, action, 0

    def write(self, data):
        data = memoryview(data)
        data = data.cast("B") if data.ndim and data.itemsize != 1 else data
        room = self.limit - self.written
        self.written += len(data)
        if 0 <= room < len(data):  # crosses the limit: write up to it, act, then the rest
            self.real.write(data[:room])
            self.real.flush()
            self.action()
            return room + self.real.write(data[room:])
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_failure_mid_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "scene.map"
    old = filled_map(seed=3)
    old.save(path)
    old_bytes = path.read_bytes()

    def crash():
        raise OSError("disk went away")

    real_open = open
    monkeypatch.setattr(
        map_file,
        "open",
        lambda p, mode: _FailingFile(real_open(p, mode), 5000, crash),
        raising=False,
    )
    with pytest.raises(OSError, match="disk went away"):
        filled_map(seed=4, shift=1.0).save(path)
    assert path.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.map"]  # temporary removed
    assert_same_content(old, VoxelMap.load(path))


def test_process_killed_mid_save_leaves_the_previous_file_intact(tmp_path):
    """A real crash: a child process is SIGKILLed while its save has half-written the new file."""
    path = tmp_path / "scene.map"
    old = filled_map(seed=5)
    old.save(path)
    child = textwrap.dedent(f"""
        import os, sys, time
        sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, "tests")!r}, {os.path.dirname(os.path.abspath(__file__))!r}]
        import numpy as np
        from scene_support import box_scene_depth
        from sole_ros.scene import VoxelMap, map_file
        from test_scene_persistence import _FailingFile, filled_map

        def stop_here():
            print("mid-write", flush=True)
            time.sleep(60)

        real_open = open
        map_file.open = lambda p, mode: _FailingFile(real_open(p, mode), 20000, stop_here)
        filled_map(seed=6, shift=2.0).save({str(path)!r})
        print("finished", flush=True)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.strip() == "mid-write", line
        temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(".scene.map.tmp-")]
        assert len(temporaries) == 1 and temporaries[0].stat().st_size >= 20000
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert_same_content(old, VoxelMap.load(path))
    # The next save goes through despite the stray temporary file.
    newer = filled_map(seed=7)
    newer.save(path)
    assert_same_content(newer, VoxelMap.load(path))


@pytest.mark.parametrize(
    "damage,reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes()[:30]), "truncated|corrupt"),
        (lambda p: p.write_bytes(b""), "bad magic"),
        (lambda p: p.write_bytes(b"PK\x03\x04 definitely not a map"), "bad magic"),
        (
            lambda p: p.write_bytes(
                bytes(
                    b ^ 0xFF if i == len(p.read_bytes()) - 5 else b
                    for i, b in enumerate(p.read_bytes())
                )
            ),
            "checksum",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h.update(format_version=2)),
            "format version 2 is not supported",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h.update(format="something.else")),
            "not a sole_ros.voxel_map",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h["settings"].update(voxel_size=-1)),
            "invalid settings",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h["arrays"][0].update(dtype="|O")),
            "unsupported dtype",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h["settings"].update(feature_dim=9)),
            "expected float16",
        ),
    ],
)
def test_corrupt_or_foreign_files_are_refused(tmp_path, damage, reason):
    path = tmp_path / "scene.map"
    filled_map(seed=8).save(path)
    damage(path)
    with pytest.raises(MapFileError, match=reason):
        VoxelMap.load(path)


def test_missing_file_is_a_map_file_error(tmp_path):
    with pytest.raises(MapFileError, match="cannot open"):
        VoxelMap.load(tmp_path / "absent.map")


def test_ingest_and_export_proceed_while_a_save_is_writing(tmp_path, monkeypatch):
    """save() copies under the lock and writes outside it: with the write held mid-file, another
    thread still integrates and exports; the file then holds the map as it was when save began."""
    import threading

    voxel_map = filled_map(seed=9)
    before = voxel_map.export()
    writing, release = threading.Event(), threading.Event()

    def hold():
        writing.set()
        assert release.wait(30)

    real_open = open
    monkeypatch.setattr(
        map_file,
        "open",
        lambda p, mode: _FailingFile(real_open(p, mode), 5000, hold),
        raising=False,
    )
    path = tmp_path / "scene.map"
    saver = threading.Thread(target=voxel_map.save, args=(path,))
    saver.start()
    try:
        assert writing.wait(30)
        summary = voxel_map.integrate_points(np.array([[3.0, 3.0, 3.0]]), np.eye(4), stamp=9.0)
        assert summary.voxels_added == 1 and len(voxel_map.export()) == len(before) + 1
    finally:
        release.set()
        saver.join(30)
    monkeypatch.undo()
    saved = VoxelMap.load(path)
    assert np.array_equal(saved.export().coords, before.coords) and saved.version == before.version


@pytest.mark.parametrize(
    "damage,reason",
    [
        (
            lambda p: rewrite_header_text(
                p, lambda t: t.replace('"version": ', '"version": Infinity, "was": ', 1)
            ),
            "numbers must be finite",
        ),
        (
            lambda p: rewrite_header_text(
                p, lambda t: t.replace('"feature_dim": 8', '"feature_dim": Infinity')
            ),
            "numbers must be finite",
        ),
        (
            lambda p: rewrite_header_text(
                p, lambda t: t.replace('"feature_dim": 8', '"feature_dim": NaN')
            ),
            "numbers must be finite",
        ),
        (
            lambda p: rewrite_header_text(
                p, lambda t: t[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
            ),
            "nests deeper",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h.update(version=10**400)),
            "map version must be an integer",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h.update(version=True)),
            "map version must be an integer",
        ),
        (lambda p: rewrite_header(p, lambda h: h.update(stamp=1e300)), "stamp must be a time"),
        (
            lambda p: rewrite_header(p, lambda h: h["settings"].update(feature_dim=10**6)),
            "feature_dim must be",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h["settings"].update(max_voxels=2.5)),
            "max_voxels must be an integer",
        ),
        (lambda p: rewrite_header(p, lambda h: h["settings"].update(evil="x")), "unknown settings"),
        (
            lambda p: rewrite_header(p, lambda h: h["arrays"][0].update(shape=[2**62, 2**62])),
            "shape must be",
        ),
        (lambda p: rewrite_header(p, lambda h: h["arrays"][0].update(offset=-1)), "offset must be"),
        (
            lambda p: rewrite_header(p, lambda h: h["arrays"].append(dict(h["arrays"][0]))),
            "appears twice",
        ),
        (
            lambda p: rewrite_header(p, lambda h: h.update(arrays={"keys": 1})),
            "corrupt array table",
        ),
        (
            lambda p: rewrite_header_text(p, lambda t: t + " " * (1 << 21)),
            "truncated or corrupt header",
        ),
        (duplicate_a_key, "not strictly increasing"),
    ],
)
def test_crafted_headers_and_arrays_are_refused_with_a_reason(tmp_path, damage, reason):
    """Every crafted file is a MapFileError with its reason (never OverflowError, RecursionError,
    MemoryError...), and a map it is restored into keeps its content."""
    path = tmp_path / "scene.map"
    filled_map(seed=8).save(path)
    damage(path)
    target = filled_map(seed=3)
    before, version = target.export(), target.version
    with pytest.raises(MapFileError, match=reason):
        target.restore(path)
    assert target.version == version
    assert np.array_equal(target.export().coords, before.coords)


def test_a_file_larger_than_the_map_can_need_is_refused_unread(tmp_path):
    """A 100 GB sparse file is refused by its size before a byte is read."""
    target = filled_map(seed=3)
    path = tmp_path / "huge.map"
    with open(path, "wb") as handle:
        handle.write(map_file.MAGIC)
        handle.truncate(100 * 1024**3)
    assert target.file_size_limit() < 100 * 1024**3
    with pytest.raises(MapFileError, match="more than the .* bytes a map of this node's size"):
        target.restore(path)


def test_special_files_are_refused_without_blocking(tmp_path):
    """A named pipe with no writer would block a plain open() forever; it is refused at once."""
    import threading

    fifo = tmp_path / "pipe.map"
    os.mkfifo(fifo)
    outcome = []
    worker = threading.Thread(
        target=lambda: outcome.append(_refusal(lambda: VoxelMap.load(fifo))), daemon=True
    )
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "loading a named pipe blocked"
    assert outcome and "not a regular file" in outcome[0]
    assert "not a regular file" in _refusal(lambda: VoxelMap.load(tmp_path))  # a folder


def _refusal(call) -> str:
    try:
        call()
    except MapFileError as error:
        return str(error)
    return "accepted"
