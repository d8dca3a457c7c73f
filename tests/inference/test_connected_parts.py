"""connected_parts gives exactly scikit-learn's DBSCAN(eps, min_samples=1) labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from sklearn.cluster import DBSCAN

from sole_ros.inference.connected_parts import connected_parts


def _dbscan(points, eps):
    return DBSCAN(eps=eps, min_samples=1).fit(points).labels_


def _random_set(rng, kind, n, scale):
    if kind == "uniform":
        return rng.uniform(0, scale, (n, 3))
    if kind == "blobs":
        centres = rng.uniform(0, scale, (6, 3))
        return centres[rng.integers(0, 6, n)] + rng.normal(0, scale * 0.03, (n, 3))
    if kind == "grid":  # voxel-like coordinates: many exactly equal distances
        return np.round(rng.uniform(0, scale, (n, 3)) / 0.02) * 0.02
    if kind == "planes":  # floor and wall sampled sparsely, like a room's masks
        floor = np.c_[rng.uniform(0, scale, (n // 2, 2)), np.zeros(n // 2)]
        wall = np.c_[
            rng.uniform(0, scale, n - n // 2),
            np.zeros(n - n // 2),
            rng.uniform(0, scale / 2, n - n // 2),
        ]
        return np.concatenate([floor, wall])
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["uniform", "blobs", "grid", "planes"])
def test_equal_to_dbscan_on_random_sets(kind):
    rng = np.random.default_rng(["uniform", "blobs", "grid", "planes"].index(kind))
    for _ in range(40):
        n = int(rng.integers(2, 600))
        scale = float(rng.uniform(0.2, 6.0))
        points = _random_set(rng, kind, n, scale)
        eps = float(rng.uniform(0.01, 0.4) * scale)
        if kind == "grid" and rng.random() < 0.5:
            eps = 0.02 * int(rng.integers(1, 6))  # eps equal to grid distances: ties decide
        np.testing.assert_array_equal(connected_parts(points, eps), _dbscan(points, eps))


def test_small_and_degenerate_inputs():
    assert connected_parts(np.zeros((0, 3)), 0.1).shape == (0,)
    np.testing.assert_array_equal(connected_parts(np.ones((1, 3)), 0.1), [0])
    same = np.zeros((5, 3))
    np.testing.assert_array_equal(connected_parts(same, 0.1), [0, 0, 0, 0, 0])
    pair = np.array([[0.0, 0, 0], [0.3, 0, 0], [0.0, 0, 0.1]])
    np.testing.assert_array_equal(connected_parts(pair, 0.2), _dbscan(pair, 0.2))
    np.testing.assert_array_equal(connected_parts(pair, 0.2), [0, 1, 0])
    with pytest.raises(ValueError):
        connected_parts(np.zeros((3, 2)), 0.1)
    with pytest.raises(ValueError):
        connected_parts(np.zeros((3, 3)), 0.0)


def test_huge_extent_uses_the_exact_fallback():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform(0, 1, (50, 3)), rng.uniform(0, 1, (50, 3)) + 1e7])
    np.testing.assert_array_equal(connected_parts(points, 1e-4), _dbscan(points, 1e-4))
    np.testing.assert_array_equal(connected_parts(points, 0.3), _dbscan(points, 0.3))


def _mosd_points(name: str) -> tuple[np.ndarray, np.ndarray]:
    from pypcd4 import PointCloud

    cloud = PointCloud.from_path(shared_data("mosd", name))
    data = cloud.numpy(("x", "y", "z", "label")).astype(np.float64)
    data = data[np.isfinite(data[:, :3]).all(axis=1)]
    return data[:, :3], data[:, 3].astype(int)


@pytest.mark.parametrize("name", ["learn0.pcd", "learn25.pcd", "learn33.pcd"])
def test_equal_to_dbscan_on_real_scans(name):
    points, labels = _mosd_points(name)
    rng = np.random.default_rng(0)
    sub = rng.choice(points.shape[0], 12000, replace=False)
    for eps in (0.004, 0.01, 0.03):  # below, around and above the sensor's point spacing
        np.testing.assert_array_equal(connected_parts(points[sub], eps), _dbscan(points[sub], eps))
    # per object (label >= 20), as masks would be split
    objects = labels[sub] >= 20
    obj = points[sub][objects]
    for eps in (0.005, 0.02, 0.95):
        np.testing.assert_array_equal(connected_parts(obj, eps), _dbscan(obj, eps))


def test_groups_split_many_sets_in_one_call_as_if_each_were_alone():
    """Overlapping point sets, one per group: one call gives each group its own DBSCAN labels
    (shifted by the labels before it), and no part spans two groups."""
    rng = np.random.default_rng(7)
    for trial in range(20):
        sets = [
            _random_set(
                rng, ["uniform", "blobs", "grid"][trial % 3], int(rng.integers(1, 300)), 1.0
            )
            for _ in range(int(rng.integers(1, 12)))
        ]
        eps = float(rng.uniform(0.02, 0.3))
        ids = rng.permutation(100)[: len(sets)]  # any ids, contiguous runs
        groups = np.concatenate([np.full(len(p), g) for p, g in zip(sets, ids)])
        labels = connected_parts(np.concatenate(sets), eps, groups=groups)
        start = 0
        for points in sets:
            own = labels[start : start + len(points)]
            np.testing.assert_array_equal(own - own.min(), _dbscan(points, eps))
            start += len(points)
        assert len(set(zip(labels, groups))) == len(np.unique(labels))
    with pytest.raises(ValueError, match="contiguous"):
        connected_parts(np.zeros((3, 3)), 0.1, groups=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="group ids"):
        connected_parts(np.zeros((3, 3)), 0.1, groups=np.array([0, 1]))


def test_groups_fall_back_to_one_at_a_time_for_huge_extents():
    """Sets kilometres apart at millimetre eps exceed the key space: still each group's DBSCAN."""
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 0.05, (50, 3))
    b = rng.uniform(0, 0.05, (40, 3)) + 5e6
    labels = connected_parts(np.concatenate([a, b]), 0.001, groups=np.r_[np.zeros(50), np.ones(40)])
    np.testing.assert_array_equal(labels[:50] - labels[:50].min(), _dbscan(a, 0.001))
    np.testing.assert_array_equal(labels[50:] - labels[50:].min(), _dbscan(b, 0.001))
