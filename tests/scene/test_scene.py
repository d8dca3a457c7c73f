"""sole_ros.scene.VoxelMap: ingest, bad input, bounds and eviction, versions, export, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scene_support import box_scene_depth, rotation_z, snapshot_arrays, translation

from sole_ros.scene import InvalidInput, VoxelMap, unpack_rgb, voxel_keys


def cube_points(rng, count, low=-1.0, high=1.0):
    return rng.uniform(low, high, (count, 3)).astype(np.float32)


def reference_voxels(points_world, voxel_size):
    """Independent reference: distinct voxel cells by sorting (np.unique)."""
    cells = np.floor(points_world / voxel_size).astype(np.int64)
    return np.unique(cells, axis=0, return_inverse=True)


# --- keys ---------------------------------------------------------------------------------------


def test_key_grouping_matches_sorting_reference():
    rng = np.random.default_rng(1)
    for count, spread in ((0, 10), (1, 10), (1000, 3), (200_000, 200), (50_000, 2_000_000)):
        cells = rng.integers(-spread // 2, spread // 2 + 1, (count, 3))
        cells = np.clip(cells, voxel_keys.COORD_MIN, voxel_keys.COORD_MAX)
        keys = voxel_keys.pack(cells)
        distinct, inverse = voxel_keys.group(keys)
        assert np.array_equal(distinct[inverse], keys)
        assert distinct.shape[0] == np.unique(keys).shape[0]
        assert np.array_equal(voxel_keys.unpack(keys), cells)


def test_packed_colours_follow_pcl_layout():
    packed = np.array([0xFF102030, 0x00FFFFFF, 0x00000000], dtype=np.uint32)
    assert unpack_rgb(packed).tolist() == [[0x10, 0x20, 0x30], [255, 255, 255], [0, 0, 0]]
    assert unpack_rgb(packed.view(np.float32)).tolist() == unpack_rgb(packed).tolist()


# --- ingest -------------------------------------------------------------------------------------


def test_points_become_voxels_with_mean_colours_like_a_reference():
    rng = np.random.default_rng(2)
    points = cube_points(rng, 20_000)
    colors = rng.integers(0, 256, (20_000, 3), dtype=np.uint8)
    pose = rotation_z(0.3) @ translation(0.5, -0.2, 1.0)
    voxel_map = VoxelMap(voxel_size=0.05)
    summary = voxel_map.integrate_points(points, pose, colors, stamp=1.0)
    world = points.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
    cells, inverse = reference_voxels(world, 0.05)
    assert summary.points_used == 20_000 and summary.voxels_added == cells.shape[0]
    snap = voxel_map.export()
    assert np.allclose(
        snap.coords, (cells + 0.5) * 0.05, atol=1e-5
    )  # export is in key order = sorted cells
    expected = np.stack([np.bincount(inverse.ravel(), weights=colors[:, c]) for c in range(3)], 1)
    expected /= np.bincount(inverse.ravel())[:, None] * 255.0
    assert np.allclose(snap.colors, expected, atol=1e-4)
    assert np.all(snap.observations == 1)


def test_repeated_observations_average_colour_and_count():
    voxel_map = VoxelMap(voxel_size=0.1)
    point = np.array([[0.05, 0.05, 0.05]], dtype=np.float32)
    for value in (0, 100, 200):
        voxel_map.integrate_points(
            point, np.eye(4), np.array([[value, value, value]], np.uint8), stamp=value
        )
    snap = voxel_map.export()
    assert len(snap) == 1 and snap.observations[0] == 3
    assert np.allclose(snap.colors[0], 100 / 255.0)
    assert snap.stamp == 200


def test_rgbd_backprojection_lands_on_the_observed_planes():
    depth, K = box_scene_depth(camera_x=0.0)
    voxel_map = VoxelMap(voxel_size=0.02)
    summary = voxel_map.integrate_rgbd(depth, K, translation(1.0, 2.0, 3.0), stamp=0.5)
    assert summary.points_used == depth.size
    z = voxel_map.export().coords[:, 2]
    # Every voxel centre is on the wall (z = 5) or the occluder (z = 4) layer of the world frame.
    assert np.all(
        np.isclose(z, 5.01, atol=1e-4)
        | np.isclose(z, 4.01, atol=1e-4)
        | np.isclose(z, 4.99, atol=1e-4)
        | np.isclose(z, 3.99, atol=1e-4)
    )
    assert np.any(z < 4.5) and np.any(z > 4.5)


def test_nan_inf_zero_and_negative_depths_are_dropped():
    depth, K = box_scene_depth(camera_x=0.0)
    depth[0, :10] = np.nan
    depth[1, :10] = np.inf
    depth[2, :10] = 0.0
    depth[3, :10] = -1.0
    voxel_map = VoxelMap()
    summary = voxel_map.integrate_rgbd(depth, K, np.eye(4))
    assert summary.dropped_invalid == 40 and summary.points_used == depth.size - 40
    assert np.all(np.isfinite(voxel_map.export().coords))


def test_uint16_millimetre_depth_equals_float_metres():
    depth, K = box_scene_depth(camera_x=0.3)
    as_mm = np.round(depth * 1000).astype(np.uint16)
    a, b = VoxelMap(), VoxelMap()
    a.integrate_rgbd(depth, K, np.eye(4))
    b.integrate_rgbd(as_mm, K, np.eye(4))
    assert np.array_equal(a.export().coords, b.export().coords)


@pytest.mark.parametrize(
    "encoding,convert",
    [
        ("rgb8", lambda rgb: rgb),
        ("bgr8", lambda rgb: rgb[:, :, ::-1].copy()),
        ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])),
    ],
)
def test_colour_encodings_give_the_same_colours(encoding, convert):
    depth, K = box_scene_depth(camera_x=0.0)
    rgb = np.random.default_rng(3).integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    reference, other = VoxelMap(), VoxelMap()
    reference.integrate_rgbd(depth, K, np.eye(4), rgb)
    other.integrate_rgbd(depth, K, np.eye(4), convert(rgb), color_encoding=encoding)
    assert np.array_equal(reference.export().colors, other.export().colors)


def test_voxels_without_colour_export_grey():
    voxel_map = VoxelMap()
    voxel_map.integrate_points(np.array([[0.0, 0.0, 1.0]]), np.eye(4))
    assert np.allclose(voxel_map.export().colors, 0.5)


# --- bad input: rejected with a reason, nothing changes -----------------------------------------


def _good_frame():
    depth, K = box_scene_depth(camera_x=0.0, width=40, height=30, fx=40.0)
    color = np.zeros(depth.shape + (3,), np.uint8)
    return depth, K, color


def _bad_rgbd_cases():
    depth, K, color = _good_frame()
    scaled = np.eye(4)
    scaled[:3, :3] *= 1.1
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])
    shear = np.eye(4)
    shear[0, 1] = 0.2
    nan_pose = np.eye(4)
    nan_pose[0, 3] = np.nan
    bottom = np.eye(4)
    bottom[3, 0] = 0.5
    bad_K = K.copy()
    bad_K[0, 0] = -1
    nan_K = K.copy()
    nan_K[1, 2] = np.nan
    return [
        ("depth must be a 2D", dict(depth=depth[None])),
        ("unsupported depth encoding", dict(depth=depth.astype(np.int32))),
        ("unsupported depth encoding", dict(depth=depth.astype(np.float16))),
        ("depth_scale must be positive", dict(depth=depth.astype(np.uint16), depth_scale=-0.001)),
        ("unknown colour encoding", dict(color_encoding="yuv422")),
        ("unknown depth encoding", dict(depth_encoding="8UC3")),
        ("needs dtype uint16", dict(depth_encoding="16UC1")),
        ("does not match depth size", dict(color=np.zeros((29, 40, 3), np.uint8))),
        ("color must be uint8", dict(color=color.astype(np.float32))),
        ("must be \\(H,W,4\\)", dict(color_encoding="rgba8")),
        ("K must be 3x3", dict(K=np.eye(4))),
        ("focal lengths must be positive", dict(K=bad_K)),
        ("K contains NaN", dict(K=nan_K)),
        ("pose must be a 4x4", dict(pose=np.eye(3))),
        ("not orthonormal", dict(pose=scaled)),
        ("not orthonormal", dict(pose=shear)),
        ("determinant", dict(pose=mirror)),
        ("NaN or inf", dict(pose=nan_pose)),
        ("last row", dict(pose=bottom)),
        ("stamp", dict(stamp=float("nan"))),
        ("stamp", dict(stamp="yesterday")),
        ("stores none", dict(features=np.zeros((3, 4, 8), np.float32))),
    ]


@pytest.mark.parametrize(
    "reason,change", _bad_rgbd_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_bad_rgbd_input_is_rejected_and_changes_nothing(reason, change):
    depth, K, color = _good_frame()
    voxel_map = VoxelMap(voxel_size=0.05)
    voxel_map.integrate_rgbd(depth, K, translation(0.3), color, stamp=1.0)
    before, version, stats = snapshot_arrays(voxel_map), voxel_map.version, voxel_map.stats()
    call = dict(depth=depth, K=K, pose=translation(0.9), color=color, stamp=2.0)
    call.update(change)
    with pytest.raises(InvalidInput, match=reason):
        voxel_map.integrate_rgbd(**call)
    assert voxel_map.version == version and voxel_map.stats() == stats
    after = snapshot_arrays(voxel_map)
    assert all(np.array_equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize(
    "reason,change",
    [
        ("features have 5 channels", dict(features=np.zeros((3, 4, 5), np.float32))),
        ("features contain NaN", dict(features=np.full((3, 4, 8), np.nan, np.float32))),
        ("features must be \\(h,w,D\\)", dict(features=np.zeros((4, 8), np.float32))),
        ("floating point", dict(features=np.zeros((3, 4, 8), np.int64))),
    ],
)
def test_bad_features_are_rejected_and_change_nothing(reason, change):
    depth, K, color = _good_frame()
    voxel_map = VoxelMap(voxel_size=0.05, feature_dim=8)
    voxel_map.integrate_rgbd(depth, K, np.eye(4), color, features=np.ones((3, 4, 8), np.float32))
    before, version = snapshot_arrays(voxel_map), voxel_map.version
    with pytest.raises(InvalidInput, match=reason):
        voxel_map.integrate_rgbd(depth, K, translation(0.5), color, **change)
    assert voxel_map.version == version
    after = snapshot_arrays(voxel_map)
    assert all(np.array_equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize(
    "reason,points,colors,pose",
    [
        ("points must be \\(N,3\\)", np.zeros((10, 2)), None, np.eye(4)),
        ("real numbers", np.array([["a", "b", "c"]]), None, np.eye(4)),
        (
            "colors has 9 rows for 10 points",
            np.ones((10, 3)),
            np.zeros((9, 3), np.uint8),
            np.eye(4),
        ),
        ("colors has 9 entries", np.ones((10, 3)), np.zeros(9, np.uint32), np.eye(4)),
        ("unsupported point colours", np.ones((10, 3)), np.zeros((10, 3), np.float32), np.eye(4)),
        ("determinant", np.ones((10, 3)), None, np.diag([-1.0, 1.0, 1.0, 1.0])),
        ("pose is missing", np.ones((10, 3)), None, None),
    ],
)
def test_bad_point_input_is_rejected_and_changes_nothing(reason, points, colors, pose):
    voxel_map = VoxelMap()
    voxel_map.integrate_points(np.array([[0.1, 0.2, 0.3]]), np.eye(4))
    before, version = snapshot_arrays(voxel_map), voxel_map.version
    with pytest.raises(InvalidInput, match=reason):
        voxel_map.integrate_points(points, pose, colors, stamp=3.0)
    assert voxel_map.version == version
    assert np.array_equal(before["coords"], snapshot_arrays(voxel_map)["coords"])


def test_frame_with_no_valid_point_changes_nothing():
    voxel_map = VoxelMap()
    voxel_map.integrate_points(np.array([[0.1, 0.2, 0.3]]), np.eye(4))
    version = voxel_map.version
    summary = voxel_map.integrate_points(
        np.array([[np.nan, 0, 0], [0, 0, 0], [np.inf, 1, 1]]), np.eye(4)
    )
    assert summary.points_used == 0 and summary.dropped_invalid == 3
    depth, K = box_scene_depth(0.0, 20, 10)
    summary = voxel_map.integrate_rgbd(np.zeros_like(depth), K, np.eye(4))
    assert summary.points_used == 0 and summary.dropped_invalid == depth.size
    assert voxel_map.version == version and voxel_map.num_voxels == 1


# --- region and size bounds ---------------------------------------------------------------------


def test_region_box_and_range_drop_points_outside():
    rng = np.random.default_rng(4)
    points = cube_points(rng, 10_000, -2, 2)
    voxel_map = VoxelMap(
        voxel_size=0.1, region_min=(-1, -1, -1), region_max=(1, 1, 1), max_range=1.5
    )
    summary = voxel_map.integrate_points(points, np.eye(4))
    inside = np.all(np.abs(points) <= 1, axis=1) & (np.linalg.norm(points, axis=1) <= 1.5)
    assert summary.points_used == int(inside.sum())
    assert summary.dropped_out_of_region == 10_000 - int(inside.sum())
    coords = voxel_map.export().coords
    assert coords.min() > -1 and coords.max() < 1


def test_size_bound_evicts_least_recently_seen_in_batches():
    rng = np.random.default_rng(5)
    voxel_map = VoxelMap(voxel_size=0.1, max_voxels=5_000, evict_fraction=0.2)
    first = None
    for frame in range(40):
        # Each frame fills a fresh 1 m cube (about 850 distinct voxels) further along x.
        points = cube_points(rng, 3_000, 0, 1) + np.float32([frame * 2.0, 0, 0])
        summary = voxel_map.integrate_points(points, np.eye(4), stamp=float(frame))
        assert voxel_map.num_voxels <= 5_000
        if frame == 0:
            first = voxel_map.export().coords.copy()
        assert summary.voxels_added + summary.voxels_dropped_capacity == len(
            np.unique(np.floor(points.astype(np.float64) / 0.1).astype(np.int64), axis=0)
        )
    stats = voxel_map.stats()
    assert stats["voxels_evicted_capacity"] > 0 and stats["capacity"] <= 5_000
    coords = voxel_map.export().coords
    # The newest frame is whole, the oldest is gone.
    assert np.sum(coords[:, 0] >= 78) == summary.voxels_added
    assert not np.any(np.isin(coords[:, 0], first[:, 0]) & (coords[:, 0] < 2))
    assert coords[:, 0].min() > 40  # only recent cubes remain


def test_equal_stamps_evict_fewer_observations_first():
    voxel_map = VoxelMap(voxel_size=1.0, max_voxels=3, evict_fraction=0.0)
    a, b, c = [[0.5, 0.5, 0.5]], [[1.5, 0.5, 0.5]], [[2.5, 0.5, 0.5]]
    voxel_map.integrate_points(np.array(a + b + c), np.eye(4), stamp=1.0)
    voxel_map.integrate_points(np.array(a + c), np.eye(4), stamp=1.0)  # a, c seen twice, b once
    voxel_map.integrate_points(np.array([[5.5, 0.5, 0.5]]), np.eye(4), stamp=1.0)
    assert sorted(voxel_map.export().coords[:, 0].tolist()) == [0.5, 2.5, 5.5]


def test_frame_larger_than_the_bound_keeps_its_nearest_voxels():
    rng = np.random.default_rng(6)
    voxel_map = VoxelMap(voxel_size=0.1, max_voxels=100)
    points = cube_points(rng, 5_000, -1, 1)
    summary = voxel_map.integrate_points(points, np.eye(4))
    assert voxel_map.num_voxels == 100 and summary.voxels_dropped_capacity > 0
    kept = np.linalg.norm(voxel_map.export().coords, axis=1)
    assert kept.max() < 0.6  # the 100 voxels nearest the sensor, not arbitrary ones


def test_keep_radius_evicts_voxels_left_behind():
    rng = np.random.default_rng(7)
    voxel_map = VoxelMap(voxel_size=0.1, keep_radius=3.0)
    for step in range(10):
        pose = translation(step * 1.0)
        voxel_map.integrate_points(cube_points(rng, 2_000, -1, 1), pose, stamp=float(step))
    coords = voxel_map.export().coords
    assert np.all(
        np.linalg.norm(coords - [9.0, 0, 0], axis=1) <= 3.0 + 0.5
    )  # last sweep within a step
    assert voxel_map.stats()["voxels_evicted_region"] > 0


def test_the_policy_decides_and_the_map_removes():
    from sole_ros.scene.eviction_policy import OldestSeenFirst
    from sole_ros.scene.voxel_store import VoxelStore

    store = VoxelStore(voxel_size=1.0, feature_dim=0, capacity_limit=4)
    slots = store.insert(voxel_keys.pack(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])))
    store.last_seen[slots] = [4.0, 1.0, 3.0, 2.0]
    policy = OldestSeenFirst(voxel_size=1.0, max_voxels=4, evict_fraction=0.5, keep_radius=None)
    new_keys = voxel_keys.pack(np.array([[9, 0, 0]]))
    room = policy.make_room(store, new_keys, observed_slots=slots[:1], origin=np.zeros(3))
    assert sorted(room.victims.tolist()) == sorted(
        slots[[1, 3]].tolist()
    )  # the two seen longest ago
    assert room.new_index.tolist() == [0] and room.dropped == 0
    assert store.size == 4  # nothing removed: that is the map's part


def test_a_map_takes_its_eviction_policy_from_its_class():
    from sole_ros.scene.eviction_policy import OldestSeenFirst

    class NewestSeenFirst(OldestSeenFirst):
        def victims(self, store, count, protected=None):
            slots = store.live_slots()
            if protected is not None:
                slots = slots[~np.isin(slots, protected)]
            return slots[np.argsort(-store.last_seen[slots], kind="stable")[:count]]

    class KeepsTheOldest(VoxelMap):
        eviction_policy = NewestSeenFirst

    voxel_map = KeepsTheOldest(voxel_size=1.0, max_voxels=2, evict_fraction=0.5)
    for stamp, x in enumerate((0.5, 1.5, 2.5)):
        voxel_map.integrate_points(np.array([[x, 0.5, 0.5]]), np.eye(4), stamp=float(stamp))
    assert sorted(voxel_map.export().coords[:, 0].tolist()) == [0.5, 2.5]
    assert voxel_map.stats()["voxels_evicted_capacity"] == 1


def test_memory_stays_flat_once_the_bound_is_reached():
    rng = np.random.default_rng(8)
    voxel_map = VoxelMap(voxel_size=0.05, max_voxels=20_000, feature_dim=16)
    sizes = []
    for frame in range(60):
        points = cube_points(rng, 4_000, 0, 1) + np.float32([frame, 0, 0])
        voxel_map.integrate_points(points, np.eye(4), stamp=float(frame))
        sizes.append(voxel_map.stats()["memory_bytes"])
    assert max(sizes) <= voxel_map.stats()["memory_bound_bytes"] * 1.05
    assert max(sizes[30:]) - min(sizes[30:]) < 0.05 * max(sizes)


# --- version, export, editing -------------------------------------------------------------------


def test_version_changes_exactly_with_content():
    voxel_map = VoxelMap(voxel_size=0.1)
    versions = [voxel_map.version]
    voxel_map.integrate_points(np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0]]), np.eye(4))
    versions.append(voxel_map.version)
    snapshot = voxel_map.export()
    assert snapshot.version == voxel_map.version and voxel_map.export() is snapshot  # cached
    voxel_map.integrate_points(np.array([[np.nan, 0.0, 0.0]]), np.eye(4))
    assert voxel_map.version == versions[-1]
    assert voxel_map.crop((-1, -1, -1), (5, 5, 5)) == 0 and voxel_map.version == versions[-1]
    assert voxel_map.crop((-1, -1, -1), (1, 1, 2)) == 1
    versions.append(voxel_map.version)
    assert voxel_map.num_voxels == 1 and voxel_map.export() is not snapshot
    voxel_map.reset()
    versions.append(voxel_map.version)
    assert voxel_map.num_voxels == 0 and len(voxel_map.export()) == 0
    assert versions == sorted(set(versions))  # strictly increasing


def test_snapshot_is_read_only_and_detached():
    voxel_map = VoxelMap(voxel_size=0.1)
    voxel_map.integrate_points(
        np.array([[0.0, 0.0, 1.0]]), np.eye(4), np.array([[10, 20, 30]], np.uint8)
    )
    snap = voxel_map.export()
    with pytest.raises(ValueError):
        snap.coords[0, 0] = 5.0
    voxel_map.integrate_points(
        np.array([[0.0, 0.0, 1.0]]), np.eye(4), np.array([[250, 250, 250]], np.uint8)
    )
    assert np.allclose(snap.colors[0], np.array([10, 20, 30]) / 255.0)


def test_concurrent_ingest_and_export_stay_consistent():
    rng = np.random.default_rng(9)
    clouds = [cube_points(rng, 5_000, 0, 1) + np.float32([i % 7, 0, 0]) for i in range(28)]
    voxel_map = VoxelMap(voxel_size=0.05, max_voxels=100_000)
    errors = []

    def ingest(part):
        try:
            for i, cloud in enumerate(part):
                voxel_map.integrate_points(cloud, np.eye(4), stamp=float(i))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    def export_loop(stop):
        try:
            while not stop.is_set():
                snap = voxel_map.export()
                assert snap.coords.shape[0] == snap.colors.shape[0] == snap.observations.shape[0]
                assert snap.version <= voxel_map.version
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    stop = threading.Event()
    workers = [threading.Thread(target=ingest, args=(clouds[i::2],)) for i in range(2)]
    reader = threading.Thread(target=export_loop, args=(stop,))
    reader.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    reader.join()
    assert not errors
    reference = VoxelMap(voxel_size=0.05, max_voxels=100_000)
    for cloud in clouds:
        reference.integrate_points(cloud, np.eye(4))
    assert np.array_equal(reference.export().coords, voxel_map.export().coords)
    assert np.array_equal(reference.export().observations, voxel_map.export().observations)
    assert voxel_map.stats()["frames_integrated"] == 28


def test_many_points_in_one_voxel_average_exactly():
    """Long runs of one voxel (an unorganised cloud, 20k points) must not overflow colour sums."""
    rng = np.random.default_rng(10)
    points = rng.uniform(0.0, 0.09, (20_000, 3))
    colors = rng.integers(0, 256, (20_000, 3), dtype=np.uint8)
    voxel_map = VoxelMap(voxel_size=0.1)
    voxel_map.integrate_points(points, np.eye(4), colors)
    snap = voxel_map.export()
    assert len(snap) == 1
    assert np.allclose(snap.colors[0], colors.mean(axis=0) / 255.0, atol=1e-5)


def test_pixel_stride_samples_the_same_surfaces():
    depth, K = box_scene_depth(camera_x=0.2, width=320, height=240, fx=300.0)
    rgb = np.random.default_rng(11).integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    full, strided = VoxelMap(voxel_size=0.05), VoxelMap(voxel_size=0.05)
    full.integrate_rgbd(depth, K, np.eye(4), rgb)
    summary = strided.integrate_rgbd(depth, K, np.eye(4), rgb, pixel_stride=2)
    assert summary.points_in == depth[::2, ::2].size
    # At 1-2 m a 5 cm voxel spans 7-15 pixels here: every voxel is still sampled.
    assert np.array_equal(full.export().coords, strided.export().coords)
    with pytest.raises(InvalidInput, match="pixel_stride"):
        strided.integrate_rgbd(depth, K, np.eye(4), rgb, pixel_stride=0)
