"""VoxelMap on real sensor data (../shared/data): Redwood RGB-D frames and mOSD Kinect scans."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from scene_support import K_PRIMESENSE, read_mosd, read_redwood, translation

from sole_ros.scene import VoxelMap


@pytest.fixture(scope="module")
def redwood():
    return read_redwood(shared_data("redwood_rgbd"))


def depth_errors(voxel_map, depth_mm, pose):
    rendered = voxel_map.render_depth(K_PRIMESENSE, pose, 640, 480)
    measured = depth_mm.astype(np.float32) / 1000.0
    both = np.isfinite(rendered) & (measured > 0)
    return np.abs(rendered[both] - measured[both]), both.sum() / max(
        1, np.count_nonzero(measured > 0)
    )


def test_redwood_fused_map_rerenders_every_measured_depth(redwood):
    depths, colors, poses = redwood
    voxel_map = VoxelMap(voxel_size=0.02)
    for index, (depth, color, pose) in enumerate(zip(depths, colors, poses)):
        summary = voxel_map.integrate_rgbd(depth, K_PRIMESENSE, pose, color, stamp=index / 30.0)
        assert summary.dropped_invalid == np.count_nonzero(depth == 0)
    assert 15_000 < voxel_map.num_voxels < 60_000
    for depth, pose in zip(depths, poses):
        error, coverage = depth_errors(voxel_map, depth, pose)
        assert coverage > 0.8, coverage
        assert np.median(error) < 0.02, np.median(error)  # under one voxel
    # Control: the same comparison from a pose 10 cm off fails the bound, so the check has teeth.
    error, _ = depth_errors(voxel_map, depths[2], poses[2] @ translation(0.0, 0.1, 0.0))
    assert np.median(error) > 0.02
    snap = voxel_map.export()
    assert np.all(np.isfinite(snap.coords)) and snap.colors.min() >= 0 and snap.colors.max() <= 1
    assert 0.1 < snap.colors.mean() < 0.9 and snap.colors.std() > 0.05  # a real, textured scene
    assert snap.observations.max() == 5


def test_clearing_what_real_frames_see_through_keeps_a_static_scene(redwood):
    """A real camera's noise (flying pixels at edges, depth jitter) must not carve a static scene:
    clearing after every frame, as the pipeline does with the object memory on, removes a few
    stray voxels and the map still re-renders every frame as well as without clearing."""
    depths, colors, poses = redwood
    kept, cleared = VoxelMap(voxel_size=0.02), VoxelMap(voxel_size=0.02)
    removed = 0
    for index, (depth, color, pose) in enumerate(zip(depths, colors, poses)):
        kept.integrate_rgbd(depth, K_PRIMESENSE, pose, color, stamp=index / 30.0)
        cleared.integrate_rgbd(depth, K_PRIMESENSE, pose, color, stamp=index / 30.0)
        removed += cleared.clear_seen_through(depth, K_PRIMESENSE, pose)
    # a voxel cleared after one frame may come back with the next: count what is missing at the end
    missing = kept.num_voxels - cleared.num_voxels
    assert removed > 0 and 0 < missing < 0.03 * kept.num_voxels
    for depth, pose in zip(depths, poses):
        error, coverage = depth_errors(cleared, depth, pose)
        error_kept, coverage_kept = depth_errors(kept, depth, pose)
        assert coverage > coverage_kept - 0.01 and np.median(error) <= np.median(error_kept) + 0.001


def test_redwood_frames_overlap_in_the_world_frame(redwood):
    """Consecutive frames, fused with their poses, mostly hit voxels the first frame created."""
    depths, colors, poses = redwood
    voxel_map = VoxelMap(voxel_size=0.02)
    voxel_map.integrate_rgbd(depths[0], K_PRIMESENSE, poses[0], colors[0])
    summary = voxel_map.integrate_rgbd(depths[4], K_PRIMESENSE, poses[4], colors[4], stamp=1.0)
    assert summary.voxels_updated > 4 * summary.voxels_added
    # Without the pose the last frame lands elsewhere: almost nothing overlaps.
    control = VoxelMap(voxel_size=0.02)
    control.integrate_rgbd(depths[0], K_PRIMESENSE, poses[0], colors[0])
    summary = control.integrate_rgbd(depths[4], K_PRIMESENSE, np.eye(4), colors[4], stamp=1.0)
    assert summary.voxels_updated < summary.voxels_added


MOSD_SCANS = ["learn0", "learn9", "learn17", "learn20", "learn25", "learn30", "learn33", "learn40"]


@pytest.mark.parametrize("scan", MOSD_SCANS)
def test_mosd_kinect_scan_becomes_a_plausible_map(scan):
    points, rgba, labels = read_mosd(shared_data("mosd", f"{scan}.pcd"))
    finite = np.all(np.isfinite(points), axis=1)
    assert 0 < finite.sum() < len(points)  # real scans: NaN rows are part of the data
    voxel_map = VoxelMap(voxel_size=0.02)
    summary = voxel_map.integrate_points(points, np.eye(4), rgba, stamp=1.0)
    assert summary.dropped_invalid == np.count_nonzero(~finite)
    assert summary.points_used == finite.sum()
    snap = voxel_map.export()
    # Reference voxelisation by sorting, independent of the map's hashing. The map computes in
    # float32, so points within 1e-3 voxel of a boundary (Kinect depths are quantised, so there are
    # some) may fall either way: compare exactly on a map of the unambiguous points only.
    scaled = points[finite].astype(np.float64) / 0.02
    clear = np.all(np.abs(scaled - np.round(scaled)) > 1e-3, axis=1)
    cells, inverse = np.unique(
        np.floor(scaled[clear]).astype(np.int64), axis=0, return_inverse=True
    )
    assert clear.mean() > 0.9 and abs(len(snap) - len(cells)) < 0.05 * len(cells)
    assert 2_000 < len(snap) < 60_000
    exact = VoxelMap(voxel_size=0.02)
    exact.integrate_points(points[finite][clear], np.eye(4), rgba[finite][clear])
    reference = exact.export()
    assert np.allclose(reference.coords, (cells + 0.5) * 0.02, atol=1e-5)
    assert not np.isnan(snap.coords).any() and not np.isnan(snap.colors).any()
    # Colours are the per-voxel means of the packed colours.
    rgb = rgba[finite][clear].view(np.uint8).reshape(-1, 4)[:, 2::-1].astype(np.float64)
    inverse = inverse.ravel()
    count = np.bincount(inverse)
    expected = (
        np.stack([np.bincount(inverse, weights=rgb[:, c]) for c in range(3)], 1)
        / count[:, None]
        / 255
    )
    assert np.allclose(reference.colors, expected, atol=1e-4)
    assert snap.colors.std() > 0.02
    # Extents: a tabletop about a metre in front of the camera.
    extent = snap.coords.max(0) - snap.coords.min(0)
    assert np.all(extent > 0.2) and np.all(extent < 3.0)
    assert 0.3 < np.median(snap.coords[:, 2]) < 2.0
    # The labelled objects on the table survive as voxels of their own (their unambiguous cells
    # are all in the map).
    objects = (labels[finite] >= 20)[clear]
    object_cells = np.unique(np.floor(scaled[clear][objects]).astype(np.int64), axis=0)
    assert len(object_cells) > 50
    in_map = {tuple(c) for c in np.round(snap.coords / 0.02 - 0.5).astype(np.int64)}
    assert all(tuple(c) in in_map for c in object_cells)


def test_mosd_scan_with_a_pose_lands_in_the_world_frame():
    points, rgba, _ = read_mosd(shared_data("mosd", "learn0.pcd"))
    # Camera 1.2 m above the floor looking down 45 degrees, 2 m along x.
    angle = np.radians(-135)
    pose = np.eye(4)
    pose[:3, :3] = [
        [1, 0, 0],
        [0, np.cos(angle), -np.sin(angle)],
        [0, np.sin(angle), np.cos(angle)],
    ]
    pose[:3, 3] = (2.0, 0.0, 1.2)
    voxel_map = VoxelMap(voxel_size=0.02)
    voxel_map.integrate_points(points, pose, rgba)
    finite = points[np.all(np.isfinite(points), axis=1)].astype(np.float64)
    world = finite @ pose[:3, :3].T + pose[:3, 3]
    coords = voxel_map.export().coords
    assert np.allclose(coords.min(0), np.floor(world.min(0) / 0.02) * 0.02 + 0.01, atol=1e-4)
    assert np.allclose(coords.max(0), np.floor(world.max(0) / 0.02) * 0.02 + 0.01, atol=1e-4)
    assert coords[:, 2].max() < 1.2  # everything the camera sees is below it
