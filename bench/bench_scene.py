"""Benchmark of scene accumulation (sole_ros.scene.VoxelMap). Prints figures; not a test.

    .venv/bin/python bench/bench_scene.py [--frames 150] [--memory-frames 2000] [--max-voxels 300000]

1. Depth + colour ingest of 640x480 RGB-D at 0.02 m, frames per second.
2. The same with dense CLIP feature fusion (a small random open_clip ViT; no pretrained weights
   exist offline): features on every frame, and on keyframes only.
3. Open3D doing the same accumulation in the same run (coloured points of each frame merged into
   a 0.02 m voxel-averaged cloud), as a ratio; Open3D's TSDF VoxelBlockGrid for reference.
   Open3D is a benchmark-only dependency (pinned in constraints.txt under tests and tools).
4. Memory over a long run with the voxel bound on (the camera keeps moving into new space).

Frames are the five real Redwood frames from ../shared/data (cycled, with perturbed poses) when
present, otherwise analytic depth images of a box scene.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sole_ros.scene import DenseClipFeatures, KeyframeSelector, VoxelMap  # noqa: E402

REDWOOD = ROOT.parent / "shared" / "data" / "redwood_rgbd"
K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])


def load_frames():
    """(depths uint16 mm, colours uint8, camera-to-world poses, description)."""
    if (REDWOOD / "trajectory.log").exists():
        from PIL import Image

        lines = (REDWOOD / "trajectory.log").read_text().split("\n")
        poses = [
            np.array([[float(v) for v in line.split()] for line in lines[5 * i + 1 : 5 * i + 5]])
            for i in range(5)
        ]
        depths = [np.array(Image.open(REDWOOD / "depth" / f"{i:05d}.png")) for i in range(5)]
        colors = [
            np.array(Image.open(REDWOOD / "color" / f"{i:05d}.jpg").convert("RGB"))
            for i in range(5)
        ]
        return depths, colors, poses, "real Redwood frames (5, cycled, perturbed poses)"
    v, u = np.mgrid[0:480, 0:640].astype(np.float64)
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    depth = np.full((480, 640), 2.5)
    box = (np.abs(x) < 0.2) & (np.abs(y) < 0.2)
    depth[box] = 1.5
    depth[y > 0.25] = np.minimum(depth[y > 0.25], 0.8 / y[y > 0.25])  # a floor
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    mm = np.round(depth * 1000).astype(np.uint16)
    return (
        [mm] * 5,
        [color] * 5,
        [np.eye(4)] * 5,
        "synthetic box scene (shared/data/redwood_rgbd absent)",
    )


def perturbed(pose, rng, drift=0.0):
    """Pose with a small random motion in the camera frame (about 2 cm, 2 degrees), plus an
    optional world-frame drift along x."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.normal(0.0, 2.0))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    motion = np.eye(4)
    motion[:3, :3] = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    motion[:3, 3] = rng.normal(0.0, 0.02, 3)
    out = pose @ motion
    out[0, 3] += drift
    return out


def frame_sequence(count, frames, seed=0, drift_per_frame=0.0):
    depths, colors, poses, _ = frames
    rng = np.random.default_rng(seed)
    for index in range(count):
        k = index % len(depths)
        yield depths[k], colors[k], perturbed(poses[k], rng, drift_per_frame * index), index / 30.0


def ingest_rate(frames, count, feature_fn=None, feature_dim=0, keyframes=None, pixel_stride=1):
    voxel_map = VoxelMap(voxel_size=0.02, max_voxels=500_000, feature_dim=feature_dim)
    sequence = list(frame_sequence(count + 5, frames))
    for depth, color, pose, stamp in sequence[:5]:  # warm-up (ray tables, allocations)
        voxel_map.integrate_rgbd(depth, K, pose, color, stamp=stamp)
    featured = 0
    start = time.perf_counter()
    for depth, color, pose, stamp in sequence[5:]:
        features = None
        if feature_fn is not None and (keyframes is None or keyframes.accept(pose, stamp)):
            features = feature_fn(color)
            featured += 1
        voxel_map.integrate_rgbd(
            depth, K, pose, color, stamp=stamp, features=features, pixel_stride=pixel_stride
        )
    elapsed = time.perf_counter() - start
    return count / elapsed, voxel_map, featured


def warmed_rate(step, sequence, count) -> float:
    """Frames per second of ``step(depth, color, pose)`` over ``sequence[5:]`` after a 5-frame warm-up."""
    for depth, color, pose, _ in sequence[:5]:
        step(depth, color, pose)
    start = time.perf_counter()
    for depth, color, pose, _ in sequence[5:]:
        step(depth, color, pose)
    return count / (time.perf_counter() - start)


def open3d_rates(frames, count):
    """Open3D, same frames: (a) coloured point cloud of each frame merged into the map cloud and
    voxel-downsampled at 0.02 m (voxel-averaged colours, like VoxelMap); (b) TSDF VoxelBlockGrid."""
    try:
        import open3d as o3d
    except (ImportError, OSError) as error:
        return (
            None,
            f"Open3D is not installed or does not load ({error}); pip install it into .venv "
            "with -c constraints.txt (Debian libusb-1.0-0 is needed too) to compare",
        )
    sequence = list(frame_sequence(count + 5, frames))
    intrinsic = o3d.camera.PinholeCameraIntrinsic(640, 480, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    cloud = o3d.geometry.PointCloud()

    def add(depth, color, pose):
        nonlocal cloud
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(color),
            o3d.geometry.Image(depth),
            depth_scale=1000.0,
            depth_trunc=100.0,
            convert_rgb_to_intensity=False,
        )
        frame = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intrinsic, np.linalg.inv(pose))
        cloud += frame
        cloud = cloud.voxel_down_sample(0.02)

    points_rate = warmed_rate(add, sequence, count)
    points_size = len(cloud.points)

    core = o3d.core
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"),
        attr_dtypes=(core.float32, core.float32, core.float32),
        attr_channels=((1), (1), (3)),
        voxel_size=0.02,
        block_resolution=16,
        block_count=20_000,
        device=core.Device("CPU:0"),
    )
    intrinsic_t = core.Tensor(K, core.float64)

    def integrate(depth, color, pose):
        depth_t = o3d.t.geometry.Image(core.Tensor(depth))
        color_t = o3d.t.geometry.Image(core.Tensor(np.ascontiguousarray(color)))
        extrinsic = core.Tensor(np.linalg.inv(pose), core.float64)
        blocks = grid.compute_unique_block_coordinates(
            depth_t, intrinsic_t, extrinsic, 1000.0, 100.0
        )
        grid.integrate(blocks, depth_t, color_t, intrinsic_t, extrinsic, 1000.0, 100.0)

    tsdf_rate = warmed_rate(integrate, sequence, count)
    return (points_rate, points_size, tsdf_rate, o3d.__version__), None


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def memory_run(frames, count, max_voxels, dense, every):
    """A camera drifting 5 cm a frame along x keeps seeing new space, so the bound is reached and
    eviction runs; features (feature_dim of the small ViT) are fused every `every` frames."""
    voxel_map = VoxelMap(voxel_size=0.02, max_voxels=max_voxels, feature_dim=dense.feature_dim)
    rows = []
    start = time.perf_counter()
    for index, (depth, color, pose, stamp) in enumerate(
        frame_sequence(count, frames, seed=1, drift_per_frame=0.05)
    ):
        features = dense.frame_features(color) if index % every == 0 else None
        voxel_map.integrate_rgbd(depth, K, pose, color, stamp=stamp, features=features)
        if (index + 1) % (count // 10) == 0 or index == 0:
            stats = voxel_map.stats()
            rows.append(
                (
                    index + 1,
                    stats["voxels"],
                    stats["memory_bytes"],
                    rss_bytes(),
                    stats["voxels_evicted_capacity"],
                )
            )
    return rows, voxel_map, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=150, help="frames per throughput run")
    parser.add_argument("--memory-frames", type=int, default=2000)
    parser.add_argument("--max-voxels", type=int, default=300_000)
    parser.add_argument(
        "--short-side", type=int, default=224, help="CLIP input short side (pixels)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch CPU threads (on a shared 2-core machine, 2 threads ran ~6x slower)",
    )
    args = parser.parse_args()

    import torch

    from sole_ros.clip import ClipSpec, load_clip

    torch.set_num_threads(args.torch_threads)
    frames = load_frames()
    print(
        f"data: {frames[3]}; 640x480, voxel 0.02 m; CPU threads: torch {torch.get_num_threads()}, "
        f"cores {os.cpu_count()}"
    )

    rate, voxel_map, _ = ingest_rate(frames, args.frames)
    print(
        f"[1] depth+colour ingest, no features: {rate:6.1f} frames/s ({1000 / rate:5.1f} ms/frame), "
        f"{voxel_map.num_voxels} voxels"
    )

    rate_strided, voxel_map_strided, _ = ingest_rate(frames, args.frames, pixel_stride=2)
    print(
        f"    with pixel_stride=2: {rate_strided:6.1f} frames/s, {voxel_map_strided.num_voxels} voxels "
        f"({voxel_map_strided.num_voxels / voxel_map.num_voxels:.1%} of full resolution)"
    )

    clip = load_clip(ClipSpec.tiny(), "cpu")
    dense = DenseClipFeatures(clip, short_side=args.short_side)
    grid = dense.grid_size(480, 640)
    sample = frames[1][0]
    start = time.perf_counter()
    for _ in range(10):
        dense.frame_features(sample)
    extract_ms = (time.perf_counter() - start) * 100
    print(
        f"    small random ViT (sole-tiny: 2 layers, width 64, D={dense.feature_dim}) at short side "
        f"{args.short_side}: {grid[0]}x{grid[1]} patches, {extract_ms:.1f} ms/frame to extract"
    )
    rate_all, voxel_map, _ = ingest_rate(
        frames, max(20, args.frames // 3), dense.frame_features, dense.feature_dim
    )
    print(
        f"[2] with feature fusion on every frame: {rate_all:6.1f} frames/s ({1000 / rate_all:5.1f} ms/frame, "
        f"extraction included), {voxel_map.stats()['voxels_with_features']} voxels with features"
    )
    selector = KeyframeSelector(min_translation=0.05, min_rotation_deg=5.0)
    rate_key, voxel_map, featured = ingest_rate(
        frames, args.frames, dense.frame_features, dense.feature_dim, selector
    )
    print(
        f"    with feature fusion on keyframes (5 cm / 5 deg): {rate_key:6.1f} frames/s, "
        f"{featured} of {args.frames} frames were keyframes"
    )

    result, reason = open3d_rates(frames, args.frames)
    if result is None:
        print(f"[3] Open3D comparison skipped: {reason}")
    else:
        points_rate, points_size, tsdf_rate, version = result
        print(
            f"[3] Open3D {version}, same frames: point cloud + voxel_down_sample(0.02) "
            f"{points_rate:6.1f} frames/s ({points_size} points) -> VoxelMap/Open3D = {rate / points_rate:4.2f}x; "
            f"TSDF VoxelBlockGrid {tsdf_rate:6.1f} frames/s -> {rate / tsdf_rate:4.2f}x"
        )

    rows, voxel_map, elapsed = memory_run(
        frames, args.memory_frames, args.max_voxels, dense, every=25
    )
    print(
        f"[4] memory over {args.memory_frames} frames, max_voxels={args.max_voxels}, feature_dim="
        f"{dense.feature_dim}, features every 25th frame ({elapsed:.0f} s, "
        f"{args.memory_frames / elapsed:.1f} frames/s); bound = "
        f"{voxel_map.stats()['memory_bound_bytes'] / 2**20:.1f} MiB"
    )
    print("    frame   voxels   map MiB   process RSS MiB   evicted")
    for frame, voxels, map_bytes, rss, evicted in rows:
        print(
            f"    {frame:5d}  {voxels:7d}  {map_bytes / 2**20:8.1f}  {rss / 2**20:16.1f}  {evicted:8d}"
        )


if __name__ == "__main__":
    main()
