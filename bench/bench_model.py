"""Benchmark of SOLE inference on the CPU: prints figures, asserts nothing but equal outputs.

A synthetic room of about 100k voxels (2 cm), the paper-size network with random weights and
open_clip's ViT-L-14 text tower with random weights, in one run:
  (a) latency of a cached query (decoder with the phrase, scoring, lazy splitting) against the
      reference's path for the same output (full forward + DBSCAN on every query's mask),
  (b) splitting every final mask into connected parts: connected_parts vs scikit-learn's DBSCAN,
      with identical partitions required; then the room's boxes as object-sized masks, at SOLE's
      eps and at the demo weights' 5 cm,
  (c) peak memory (resident set) after each stage.

    .venv/bin/python bench/bench_model.py [--voxels 100000] [--threads 1] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sole_ros.clip import ClipSpec  # noqa: E402
from sole_ros.inference.connected_parts import connected_parts  # noqa: E402
from sole_ros.inference.reference import reference_instances  # noqa: E402
from sole_ros.inference.segmenter import OpenVocabSegmenter  # noqa: E402
from sole_ros.model import SoleConfig, SoleModel  # noqa: E402
from sole_ros.model.text import TextEncoder  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_room(target_voxels: int, voxel: float, rng: np.random.Generator):
    """Floor, two walls and a few boxes, one point per 2 cm cell; colours and CLIP features random.
    Returns points, colours, features and each box's point indices (object-sized masks)."""
    # floor of w x d and walls of height h sized so the surfaces hold about target_voxels cells
    h = 2.4
    w = d = 1.0
    while True:
        cells = (w * d + w * h + d * h) / voxel**2
        if cells >= target_voxels * 0.8:  # the boxes add the rest
            break
        w, d = w * 1.02, d * 1.02
    g = lambda a, b: np.arange(a, b, voxel) + voxel / 2  # noqa: E731
    floor = np.stack(np.meshgrid(g(0, w), g(0, d), [voxel / 2]), -1).reshape(-1, 3)
    wall1 = np.stack(np.meshgrid(g(0, w), [voxel / 2], g(0, h)), -1).reshape(-1, 3)
    wall2 = np.stack(np.meshgrid([voxel / 2], g(0, d), g(0, h)), -1).reshape(-1, 3)
    boxes = []
    for _ in range(6):  # boxes standing on the floor, surface only
        lo = rng.uniform([0.5, 0.5, 0.0], [w - 1.0, d - 1.0, 0.0])
        size = rng.uniform(0.3, 0.8, 3)
        grid = np.stack(np.meshgrid(*(g(lo[i], lo[i] + size[i]) for i in range(3))), -1).reshape(
            -1, 3
        )
        edge = ((grid - lo) < voxel) | ((lo + size - grid) < voxel)
        boxes.append(grid[edge.any(axis=1)])
    points = np.concatenate([floor, wall1, wall2, *boxes])
    ends = np.cumsum([len(floor) + len(wall1) + len(wall2)] + [len(b) for b in boxes])
    box_indices = [np.arange(a, b) for a, b in zip(ends[:-1], ends[1:])]
    points += rng.uniform(-0.4, 0.4, points.shape) * voxel  # stay inside the cell
    colors = rng.uniform(0, 1, points.shape)
    clip = rng.normal(size=(points.shape[0], 768)).astype(np.float32)
    clip /= np.linalg.norm(clip, axis=1, keepdims=True)
    return points, colors, clip, box_indices


def timed(fn, repeat=1):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, times


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--voxels", type=int, default=100_000)
    # 1 by default: on a shared 2-core machine, 2 OpenMP threads waiting on each other ran slower
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="cached queries to time")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="time the cached path only (skip the reference path and scikit-learn, ~20 min here)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    print(
        f"# SOLE inference benchmark: torch {torch.__version__}, {args.threads} threads, device {args.device}"
    )

    cfg = SoleConfig()
    (model, text_encoder), t_build = timed(
        lambda: (SoleModel(cfg).eval(), TextEncoder(ClipSpec("ViT-L-14", None), device=args.device))
    )
    print(
        f"build: paper-size SOLE ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters) "
        f"+ ViT-L-14 CLIP, random weights: {t_build[0]:.1f} s, peak RSS {peak_rss_mib():.0f} MiB"
    )
    rss_built = peak_rss_mib()

    points, colors, clip, box_indices = synthetic_room(args.voxels, cfg.voxel_size, rng)
    seg = OpenVocabSegmenter(model, text_encoder, device=args.device)
    _, t_scene = timed(lambda: seg.set_scene(points, colors, clip, version=1))
    scene = seg._scene.scene
    print(
        f"scene: {points.shape[0]} points, {scene.num_voxels} voxels; set_scene (voxelise + encode, "
        f"once per scene version): {t_scene[0]:.2f} s, peak RSS {peak_rss_mib():.0f} MiB"
    )

    phrase = "office chair"
    _, t_first = timed(lambda: seg.query([phrase]))  # text encoder runs for the new phrase
    fast, t_cached = timed(lambda: seg.query([phrase]), repeat=args.repeat)
    _, t_text = timed(lambda: text_encoder.encode(["a phrase never seen"]))
    rss_fast = peak_rss_mib()
    print(
        f"\n(a) cached query ('{phrase}', top-{seg.top_k}, eps {seg.dbscan_eps} m): "
        f"median {statistics.median(t_cached):.2f} s over {args.repeat} "
        f"(first, with the text encoder: {t_first[0]:.2f} s; text encoder alone {t_text[0]:.2f} s); "
        f"{len(fast)} instances"
    )

    if args.quick:
        print(f"(c) peak resident memory after the cached path: {rss_fast:.0f} MiB")
        return
    text = text_encoder.encode([phrase])
    ref, t_ref = timed(lambda: reference_instances(model, scene, text, seg.dbscan_eps, seg.top_k))
    same = len(ref) == len(fast) and all(
        r.query == f.query_index
        and np.array_equal(r.voxels, np.sort(f.voxel_indices))
        and abs(r.score - f.score) <= 1e-5 * max(1.0, abs(r.score))
        for r, f in zip(ref, fast)
    )
    print(
        f"    reference path (full forward + DBSCAN on all {cfg.num_queries} masks): {t_ref[0]:.2f} s; "
        f"{len(ref)} instances; same output: {same}"
    )
    print(f"    speed-up: {t_ref[0] / statistics.median(t_cached):.1f}x (target >= 10x)")

    # (b) splitting all final masks
    masks, _ = seg.predict([phrase])
    raw = scene.raw_coords.numpy().astype(np.float64)
    positive = [np.flatnonzero(masks[:, q].numpy() > 0) for q in range(masks.shape[1])]
    sizes = np.array([len(v) for v in positive])
    ours, t_ours = timed(
        lambda: [connected_parts(raw[v], seg.dbscan_eps) if len(v) else None for v in positive]
    )
    from sklearn.cluster import DBSCAN

    theirs, t_theirs = timed(
        lambda: [
            DBSCAN(eps=seg.dbscan_eps, min_samples=1, n_jobs=-1).fit(raw[v]).labels_
            if len(v)
            else None
            for v in positive
        ]
    )
    identical = all((a is None and b is None) or np.array_equal(a, b) for a, b in zip(ours, theirs))
    parts = sum(int(a.max()) + 1 for a in ours if a is not None)
    print(
        f"\n(b) splitting {int((sizes > 0).sum())} masks (voxels per mask: median {int(np.median(sizes))}, "
        f"max {int(sizes.max())}) into {parts} parts: connected_parts {t_ours[0]:.2f} s, "
        f"scikit-learn DBSCAN {t_theirs[0]:.2f} s -> {t_theirs[0] / t_ours[0]:.1f}x (target >= 20x); "
        f"identical partitions: {identical}"
    )
    # Object-sized masks: the room's boxes (the random-weight masks above are room-sized, DBSCAN's
    # worst case, since its cost grows with the neighbours within eps of each point), at SOLE's eps
    # and at the demo weights' 5 cm for tabletops.
    objects = [points[i].astype(np.float64) for i in box_indices]
    for eps in (seg.dbscan_eps, 0.05):
        ours, t_ours = timed(lambda: [connected_parts(o, eps) for o in objects], repeat=3)
        theirs, t_theirs = timed(
            lambda: [DBSCAN(eps=eps, min_samples=1, n_jobs=-1).fit(o).labels_ for o in objects],
            repeat=3,
        )
        identical = all(np.array_equal(a, b) for a, b in zip(ours, theirs))
        print(
            f"    object-sized, eps {eps} m: the room's {len(objects)} boxes (points: median "
            f"{int(np.median([len(o) for o in objects]))}), connected_parts {min(t_ours):.3f} s, scikit-learn "
            f"DBSCAN {min(t_theirs):.3f} s -> {min(t_theirs) / min(t_ours):.1f}x; identical partitions: {identical}"
        )

    cache_bytes = sum(t.numel() * t.element_size() for t in _tensors(seg._scene.encoding))
    print(
        f"\n(c) peak resident memory: after building {rss_built:.0f} MiB, after the cached path "
        f"{rss_fast:.0f} MiB, after the reference path and DBSCAN {peak_rss_mib():.0f} MiB; "
        f"cached scene encoding {cache_bytes / 2**20:.0f} MiB"
    )


def _tensors(encoding):
    for level in encoding.levels:
        yield from (level.keys, level.pos, level.mask_features, level.pool.values())
    yield from (
        encoding.mask_features,
        encoding.query_feat,
        encoding.query_pos,
        encoding.clip,
        encoding.raw_coords,
    )


if __name__ == "__main__":
    main()
