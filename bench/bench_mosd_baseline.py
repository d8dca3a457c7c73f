"""A purely geometric baseline on the real mOSD Kinect scans: RANSAC table-plane removal, then
DBSCAN clusters as object instances, scored with the project's ScanNet-style AP (class-agnostic).

This is the yardstick a trained model must beat on real scans. It needs Open3D (benchmark-only):
    .venv/bin/pip install -c constraints.txt open3d      (and Debian's libusb-1.0-0)

    python bench/bench_mosd_baseline.py [--data ../shared/data/mosd] [--eps 0.02] [--min-points 10] [--seeds 5]

RANSAC draws at random, so the figure depends on the draw: each of ``--seeds`` seeds of Open3D's
generator is one run, and every run's figures are printed, then their median. (Unseeded, 19 of
21 runs gave AP50 0.830-0.834 and 2 gave 0.725: a plane fit that cuts one object.)
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from sole_ros.datasets.mosd import OBJECT, MosdScans
from sole_ros.evaluation.instance_ap import SceneGroundTruth, ScenePrediction, evaluate_instances

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mosd"


def geometric_instances(
    points: np.ndarray, plane_distance: float, eps: float, min_points: int, min_cluster: int
) -> ScenePrediction:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    _, plane = cloud.segment_plane(
        distance_threshold=plane_distance, ransac_n=3, num_iterations=1000
    )
    rest = np.setdiff1d(np.arange(len(points)), np.asarray(plane, dtype=np.int64))
    labels = np.asarray(
        cloud.select_by_index(rest.tolist()).cluster_dbscan(eps=eps, min_points=min_points)
    )
    masks, scores = [], []
    for cluster in np.unique(labels[labels >= 0]):
        members = rest[labels == cluster]
        if len(members) < min_cluster:
            continue
        mask = np.zeros(len(points), dtype=bool)
        mask[members] = True
        masks.append(mask)
        scores.append(float(len(members)))  # larger clusters first: the only confidence there is
    masks = np.stack(masks, axis=1) if masks else np.zeros((len(points), 0), dtype=bool)
    scores = np.asarray(scores) / max(scores, default=1.0)
    return ScenePrediction(masks, np.full(masks.shape[1], OBJECT), scores)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=pathlib.Path, default=DEFAULT_DATA, help="folder of mOSD .pcd scans"
    )
    parser.add_argument(
        "--plane-distance", type=float, default=0.01, help="RANSAC inlier distance (m)"
    )
    parser.add_argument("--eps", type=float, default=0.02, help="DBSCAN radius (m)")
    parser.add_argument("--min-points", type=int, default=10, help="DBSCAN core point neighbours")
    parser.add_argument(
        "--min-cluster", type=int, default=100, help="smallest cluster kept (points)"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="RANSAC runs, seeded 0, 1, ... (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        import open3d as o3d
    except ImportError as error:
        print(
            f"bench_mosd_baseline: Open3D is not installed ({error}); see this script's docstring",
            file=sys.stderr,
        )
        return 2
    scans = MosdScans(args.data)
    samples = [scans[i] for i in range(len(scans))]
    for sample in samples:
        print(f"{sample.name:>8}: {len(np.unique(sample.instance[sample.instance > 0]))} objects")
    figures = []
    for seed in range(args.seeds):
        o3d.utility.random.seed(seed)
        pairs = [
            (
                SceneGroundTruth(s.semantic, s.instance),
                geometric_instances(
                    s.points, args.plane_distance, args.eps, args.min_points, args.min_cluster
                ),
            )
            for s in samples
        ]
        # min region 30 points, as `sole-ros eval` scores mOSD
        summary = evaluate_instances(pairs, [OBJECT], ["object"], min_region_size=30).summary()
        figures.append([summary[k] for k in ("agnostic_ap", "agnostic_ap50", "agnostic_ap25")])
        print(
            f"RANSAC seed {seed}: {sum(p.masks.shape[1] for _, p in pairs)} clusters; class-agnostic "
            f"AP {figures[-1][0]:.3f}  AP50 {figures[-1][1]:.3f}  AP25 {figures[-1][2]:.3f}",
            flush=True,
        )
    ap, ap50, ap25 = np.median(np.array(figures), axis=0)
    print(
        f"geometric baseline on {len(samples)} mOSD scans (class-agnostic, median of {args.seeds} RANSAC seeds): "
        f"AP {ap:.3f}  AP50 {ap50:.3f}  AP25 {ap25:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
