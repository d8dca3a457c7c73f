"""The reference input mode: first point per voxel in arrival order, and the query seeds of the
reference's CUDA furthest point sampler (sole_ros/model/voxel.py, sole_ros/model/fps.py).

The sampler is checked against clouds worked out by hand from the kernel's rules and against
``literal_kernel`` below, a slow thread-by-thread simulation of the kernel: every thread's scan
over its strided indices, then the shared-memory tree reduction step by step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_data

from sole_ros.model import SoleConfig, voxelize
from sole_ros.model.fps import kernel_block_size, reference_furthest_point_sample
from sole_ros.pipeline import PipelineSettings, load_segmenter, with_input_mode


def _f32(x) -> float:
    return float(np.float32(x))


def literal_kernel(points: list[tuple[float, float, float]], m: int) -> list[int]:
    """The kernel as written, one thread and one reduction slot at a time, in float32."""
    n = len(points)
    pts = [tuple(_f32(c) for c in p) for p in points]
    pow_2 = int(np.log(float(n)) / np.log(2.0))  # opt_n_threads
    block = max(min(1 << pow_2, 512), 1)
    temp = [_f32(1e10)] * n
    idxs = [0] * m
    old = 0
    for j in range(1, m):
        x1, y1, z1 = pts[old]
        dists = [0.0] * block
        dists_i = [0] * block
        for tid in range(block):
            besti, best = 0, -1.0
            for k in range(tid, n, block):
                x2, y2, z2 = pts[k]
                mag = _f32(_f32(_f32(x2 * x2) + _f32(y2 * y2)) + _f32(z2 * z2))
                if mag <= 1e-3:
                    continue
                dx, dy, dz = _f32(x2 - x1), _f32(y2 - y1), _f32(z2 - z1)
                d = _f32(_f32(_f32(dx * dx) + _f32(dy * dy)) + _f32(dz * dz))
                d2 = min(d, temp[k])
                temp[k] = d2
                besti = k if d2 > best else besti
                best = d2 if d2 > best else best
            dists[tid], dists_i[tid] = best, besti
        stride = block // 2
        while stride >= 1:
            for tid in range(stride):  # __update(dists, dists_i, tid, tid + stride)
                v1, v2 = dists[tid], dists[tid + stride]
                i1, i2 = dists_i[tid], dists_i[tid + stride]
                dists[tid] = max(v1, v2)
                dists_i[tid] = i2 if v2 > v1 else i1
            stride //= 2
        old = dists_i[0]
        idxs[j] = old
    return idxs


def sample(points, m) -> list[int]:
    return reference_furthest_point_sample(torch.tensor(points, dtype=torch.float32), m).tolist()


# --- the sampler on hand-worked clouds ---------------------------------------------------------


def test_block_size_is_the_largest_power_of_two_up_to_512():
    assert [
        kernel_block_size(n) for n in (1, 2, 3, 4, 7, 8, 511, 512, 513, 1023, 1024, 1025, 10**6)
    ] == [1, 2, 2, 4, 4, 8, 256, 512, 512, 512, 512, 512, 512]
    # the kernel's own formula (log in double precision, truncated) agrees everywhere it matters
    for n in range(1, 2048):
        assert kernel_block_size(n) == max(min(1 << int(np.log(float(n)) / np.log(2.0)), 512), 1)


def test_ties_go_to_the_first_index_within_a_thread():
    # n = 5 -> block 4: thread 0 scans k = 0, 4; threads 1..3 scan k = 1..3.
    # Seed 0 = (1,0,0). Distances to it: k1 (3,0,0): 4, k2 (-1,0,0): 4, k3 (1,2,0): 4, k4 (1,-2,0): 4.
    # Every thread holds 4 (thread 0 its k4). Reduction, block 4: stride 2: slot 0 = (t0 4, t2 4) ->
    # tie keeps t0; slot 1 = (t1, t3) -> t1. Stride 1: (t0, t1) -> t0. So k = 4 is the second seed.
    # Then distances to (1,-2,0): k1 (3,0,0): 8 -> 4; k2: 8 -> 4; k3: 16 -> 4. All tie at 4 again;
    # thread 0 holds only k0 (0) and k4 (0): best 0. Stride 2: slot 0 = (t0 0, t2 4) -> t2 (k2);
    # slot 1 = (t1 4, t3 4) -> t1. Stride 1: (t2's 4, t1's 4) -> tie keeps slot 0: k2.
    pts = [(1, 0, 0), (3, 0, 0), (-1, 0, 0), (1, 2, 0), (1, -2, 0)]
    assert sample(pts, 3) == [0, 4, 2]
    assert literal_kernel(pts, 3) == [0, 4, 2]


def test_ties_between_threads_go_to_the_smallest_bit_reversed_thread():
    # n = 8 -> block 8, one index per thread. Seed k0 = (10,0,0). Squared distances to it:
    # k3 (12,0,0), k5 (8,0,0), k6 (10,2,0): 4; k1 (11,0,0), k2 (9,0,0), k4 (10,1,0), k7 (10,-1,0): 1;
    # k0 itself: 0. Threads 3, 5 and 6 tie at 4. Bit-reversed ids (3 bits): 3 = 011 -> 110 = 6,
    # 5 = 101 -> 101 = 5, 6 = 110 -> 011 = 3: the smallest is thread 6's. Step by step:
    # stride 4: slot 0 = (t0 0, t4 1) -> t4; slot 1 = (t1 1, t5 4) -> t5; slot 2 = (t2 1, t6 4) -> t6;
    # slot 3 = (t3 4, t7 1) -> t3. Stride 2: slot 0 = (t4 1, t6 4) -> t6; slot 1 = (t5 4, t3 4) ->
    # tie keeps t5. Stride 1: (t6 4, t5 4) -> tie keeps slot 0: t6. The second seed is k6.
    pts = [
        (10, 0, 0),
        (11, 0, 0),
        (9, 0, 0),
        (12, 0, 0),
        (10, 1, 0),
        (8, 0, 0),
        (10, 2, 0),
        (10, -1, 0),
    ]
    assert sample(pts, 2) == [0, 6]
    assert literal_kernel(pts, 2) == [0, 6]
    # a plain argmax would take k3, the first index at the largest distance
    dist = (
        (torch.tensor(pts, dtype=torch.float32) - torch.tensor(pts[0], dtype=torch.float32)) ** 2
    ).sum(1)
    assert int(torch.argmax(dist)) == 3


def test_the_voxel_at_the_origin_is_never_chosen_and_never_updated():
    # n = 4 -> block 4. k1 = (0,0,0) is farthest from the seed (5,0,0) (25) yet skipped: the
    # candidates are k2 (4,0,0): 1 and k3 (7,0,0): 4 -> k3. Next, from (7,0,0): k2 min(9, 1) = 1,
    # k3 0, so k2. Then all remaining distances are 0 (k0, k2, k3) and k1 still never comes: the
    # threads tie at 0; bit-reversed (2 bits) 0 -> 0 wins: k0.
    pts = [(5, 0, 0), (0, 0, 0), (4, 0, 0), (7, 0, 0)]
    assert sample(pts, 5) == [0, 3, 2, 0, 0]
    assert literal_kernel(pts, 5) == [0, 3, 2, 0, 0]


def test_the_origin_as_first_point_still_seeds_and_a_lone_origin_repeats_index_0():
    # Seed k0 is (0,0,0): the first index by rule, distances are measured from it, it never comes
    # again. From (0,0,0): k1 (1,0,0) 1, k2 (0,3,0) 9, k3 (2,0,0) 4 -> k2. From (0,3,0): k1 min(1, 10)
    # = 1, k3 min(4, 13) = 4 -> k3. From (2,0,0): k1 min(1, 1) = 1, the others 0 -> k1. Then every
    # eligible distance is 0. Block 4, one index per thread; thread 0 holds only the skipped k0, so
    # it keeps best -1. Bit-reversed ids (2 bits): t1 -> 2, t2 -> 1, t3 -> 3: thread 2 wins, k2.
    pts = [(0, 0, 0), (1, 0, 0), (0, 3, 0), (2, 0, 0)]
    assert sample(pts, 5) == [0, 2, 3, 1, 2]
    assert literal_kernel(pts, 5) == [0, 2, 3, 1, 2]
    # no point but the origin (and a second origin-like point): every thread has best -1, index 0
    assert (
        sample([(0, 0, 0), (0, 0, 0)], 3) == [0, 0, 0] == literal_kernel([(0, 0, 0), (0, 0, 0)], 3)
    )


@pytest.mark.parametrize(
    "n", [2, 3, 7, 8, 9, 63, 64, 65, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 1537]
)
def test_matches_the_literal_kernel_on_tie_heavy_integer_clouds(n):
    rng = np.random.default_rng(n)
    side = max(2, round(n ** (1 / 3)) + 1)  # a dense small grid: nearly every step has ties
    cells = rng.choice(side**3 * 2, size=n, replace=False)
    pts = (
        np.stack([cells % side, (cells // side) % side, cells // (side * side)], axis=1) - side // 2
    )
    m = 24 if n < 1000 else 12
    expected = literal_kernel([tuple(map(float, p)) for p in pts], m)
    assert sample(pts.tolist(), m) == expected


def test_more_seeds_than_points_follow_the_same_rules():
    pts = [(1, 1, 0), (2, 1, 0), (1, 2, 0), (3, 3, 1), (0, 0, 0)]
    assert sample(pts, 9) == literal_kernel(pts, 9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_same_seeds_on_a_cuda_tensor():
    rng = np.random.default_rng(3)
    pts = torch.tensor(rng.integers(-20, 20, size=(3000, 3)), dtype=torch.float32)
    cpu = reference_furthest_point_sample(pts, 150)
    gpu = reference_furthest_point_sample(pts.cuda(), 150)
    assert gpu.device.type == "cuda" and torch.equal(cpu, gpu.cpu())


# --- voxelisation ---------------------------------------------------------------------------------


def test_reference_voxels_take_the_first_point_and_keep_arrival_order():
    cfg = SoleConfig.tiny(voxel_size=1.0)
    points = np.array(
        [[5.2, 0.1, 0.1], [0.5, 0.5, 0.5], [5.9, 0.9, 0.9], [0.1, 0.2, 0.3], [2.5, 0, 0]]
    )
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0.5, 0.5, 0.5]], dtype=float)
    clip = np.zeros((5, cfg.clip_dim), dtype=np.float32)
    clip[np.arange(5), np.arange(5)] = 2.0  # a different axis per point (normalised to 1)
    scene = voxelize(points, colors, clip, cfg, mode="reference")
    # voxels by first occurrence: (5,0,0) from point 0, (0,0,0) from point 1, (2,0,0) from point 4
    assert scene.coords.tolist() == [[5, 0, 0], [0, 0, 0], [2, 0, 0]]
    assert scene.point_to_voxel.tolist() == [0, 1, 0, 1, 2]
    np.testing.assert_allclose(scene.raw_coords.numpy(), points[[0, 1, 4]], rtol=0, atol=1e-6)
    mean, std = np.array(cfg.color_mean), np.array(cfg.color_std)
    np.testing.assert_allclose(
        scene.features.numpy(), (colors[[0, 1, 4]] - mean) / std, rtol=1e-6, atol=1e-6
    )
    assert scene.clip.argmax(1).tolist() == [0, 1, 4]
    np.testing.assert_allclose(scene.clip.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    # the averaged mode: lexicographic order and means
    averaged = voxelize(points, colors, clip, cfg, mode="averaged")
    assert averaged.coords.tolist() == [[0, 0, 0], [2, 0, 0], [5, 0, 0]]
    np.testing.assert_allclose(averaged.raw_coords[2].numpy(), points[[0, 2]].mean(0), atol=1e-6)


def test_reference_voxel_order_follows_the_points_order_and_the_config_picks_the_mode():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 0.3, (400, 3))
    colors = rng.uniform(0, 1, (400, 3))
    cfg = SoleConfig.tiny(input_mode="reference")
    scene = voxelize(points, colors, None, cfg)  # the config's mode
    flip = voxelize(points[::-1], colors[::-1], None, cfg)
    grid = np.floor(points / cfg.voxel_size).astype(int)
    _, first = np.unique(grid, axis=0, return_index=True)
    assert scene.coords.tolist() == grid[np.sort(first)].tolist()
    assert sorted(map(tuple, scene.coords.tolist())) == sorted(map(tuple, flip.coords.tolist()))
    assert scene.coords.tolist() != flip.coords.tolist()  # the order is the points' own
    assert torch.equal(
        scene.coords[torch.from_numpy(scene.point_to_voxel)], torch.from_numpy(grid).int()
    )
    with pytest.raises(ValueError, match="input mode"):
        voxelize(points, colors, None, cfg, mode="median")


# --- choosing the mode ------------------------------------------------------------------------------


def test_auto_keeps_the_checkpoints_mode_and_a_setting_forces_one():
    published = SoleConfig(input_mode="reference")
    own = SoleConfig()
    quiet = dict(log=lambda *_: None)
    assert with_input_mode(published, "auto", **quiet).input_mode == "reference"
    assert with_input_mode(own, "auto", **quiet).input_mode == "averaged"
    assert with_input_mode(own, "reference", **quiet).input_mode == "reference"
    assert with_input_mode(published, "averaged", **quiet).input_mode == "averaged"
    with pytest.raises(ValueError):
        with_input_mode(own, "first", **quiet)


def test_published_checkpoints_read_as_reference_and_runs_record_their_mode(tmp_path):
    from sole_ros.model import SoleModel
    from sole_ros.model.checkpoint import config_from_checkpoint, read_checkpoint
    from sole_ros.training.checkpointing import save_checkpoint
    from sole_ros.training.config import TrainConfig

    model = SoleModel(SoleConfig.tiny())
    published = tmp_path / "published.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, published)
    assert config_from_checkpoint(read_checkpoint(published)).input_mode == "reference"
    config = SoleConfig.tiny(input_mode="reference")
    run = save_checkpoint(tmp_path / "run.pt", SoleModel(config), config, TrainConfig())
    stored = read_checkpoint(run)["hyper_parameters"]["sole_config"]
    assert stored["input_mode"] == "reference"
    assert SoleConfig.from_dict(stored) == config
    legacy = {k: v for k, v in stored.items() if k != "input_mode"}  # files written before the mode
    assert SoleConfig.from_dict(legacy).input_mode == "averaged"


@pytest.fixture(scope="module")
def small_scan():
    from sole_ros.pointfiles import read_point_file

    scan = read_point_file(shared_data("mosd", "learn33.pcd"))
    keep = np.random.default_rng(0).permutation(scan.points.shape[0])[:12000]
    return scan.points[keep], scan.colors[keep]


@pytest.mark.parametrize("mode", ["auto", "reference", "averaged"])
def test_both_modes_segment_a_real_scan_with_the_demo_weights(small_scan, mode):
    points, colors = small_scan
    segmenter, _ = load_segmenter(
        PipelineSettings(device="cpu", input_mode=mode), torch.device("cpu"), log=lambda *_: None
    )
    # the demo weights were trained with averaging: auto keeps it
    assert segmenter.model.config.input_mode == ("averaged" if mode == "auto" else mode)
    segmenter.set_scene(points, colors)
    instances = segmenter.query(["object"])
    assert instances and all(i.num_points > 0 for i in instances)
