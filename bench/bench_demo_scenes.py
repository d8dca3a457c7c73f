"""How often the weights find the demo's objects: the demo's path on many scenes like the demo's.

The demo (and tests/weights/test_demo_weights.py) asks one scene, seed 11, for three objects; that is one
draw of the scene generator. This runs the same path (16 RGB-D frames of a tabletop with the demo's
five classes, fused by the pipeline, 16 test-time views, the nine class names as contrast phrases)
on other scene seeds and reports, per checkpoint in one run:
  - query top-1: the share of queries (every demo class present, "find the <class>") whose best
    answer lies at least 80% inside that object's box (2 cm of slack), the test's criterion;
  - scenes passed: the share of scenes where the demo's three queries all pass, as the test asks;
  - for each miss, where its best answer lay: on which other object (most of it inside that
    object's box) or on none (a fragment across objects or the table), to tell names from masks.

With --perfect-features (a checkpoint whose CLIP has a trained image tower) each frame's dense
features are replaced by what that tower is trained to give: every pixel the text embedding of its
true class, floor or wall (sole_ros.training.image_tower). It is the bound a better tower can reach.

    python bench/bench_demo_scenes.py [--checkpoints A.ckpt B.ckpt] [--seeds 1000-1019]
                                      [--scene-scale 1.0] [--queries 128]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sole_ros.model.text import object_phrase  # noqa: E402
from sole_ros.pipeline import PipelineSettings, build_pipeline, find_default_checkpoint  # noqa: E402
from sole_ros.ros.demo import DEFAULT_QUERIES, DEMO_CLASSES  # noqa: E402
from sole_ros.ros.sensor_player import render_demo_frames  # noqa: E402
from sole_ros.synthetic import CLASS_NAMES  # noqa: E402
from sole_ros.synthetic.catalogue import OBJECT_SIZES  # noqa: E402
from sole_ros.training.image_tower import pixel_targets  # noqa: E402


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    try:
        return list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIRST-LAST, e.g. 1000-1019") from None


def score_scene(pipeline, scene, frames, perfect=None) -> tuple[dict[str, str | None], float]:
    """{class name: None when its best answer is on it, else where that answer lay (another object's
    class, "none", or "no answer")} for every demo class in the scene, and the seconds taken.
    ``perfect``: the vocabulary's text embeddings, to fuse each pixel's true one instead of the tower's."""
    pipeline.reset()
    start = time.perf_counter()
    for frame in frames:
        if perfect is not None:
            pipeline.dense_features.frame_features = lambda _, frame=frame: perfect_features(
                frame, perfect
            )
        pipeline.ingest_rgbd(frame.depth, frame.K, frame.pose, color=frame.color, stamp=frame.stamp)
    coords = pipeline.segment().snapshot.coords
    results = {}
    for obj in scene.objects:
        if obj.class_name not in DEMO_CLASSES:
            continue  # the table
        answers = pipeline.query([f"find the {obj.class_name}"], max_results=1).instances
        results[obj.class_name] = (
            landed_on(scene, obj, coords[answers[0].point_indices]) if answers else "no answer"
        )
    return results, time.perf_counter() - start


def landed_on(scene, asked, points) -> str | None:
    """None when ``points`` (an answer) pass the test's criterion for object ``asked``; else the class
    of the other demo object holding most of them (over half), or "none"."""
    if asked.share_inside(points) >= 0.8:
        return None
    shares = {
        obj.class_name: obj.share_inside(points)
        for obj in scene.objects
        if obj is not asked and obj.class_name in DEMO_CLASSES
    }
    best = max(shares, key=shares.get, default=None)
    return best if best is not None and shares[best] > 0.5 else "none"


def perfect_features(frame, embeddings: torch.Tensor) -> torch.Tensor:
    """(H,W,D) at pixel resolution: each pixel the embedding of its true phrase; zero where unseen."""
    targets = torch.from_numpy(pixel_targets(frame).astype(np.int64))
    features = embeddings[targets.clamp(min=0)]
    features[targets < 0] = 0
    return features


def tower_targets(path) -> torch.Tensor:
    """The text embeddings the image tower of checkpoint ``path`` was trained towards."""
    from sole_ros.model.checkpoint import read_checkpoint
    from sole_ros.training.image_tower import clip_with_text_tower_of, vocabulary_embeddings

    data = read_checkpoint(path)
    return vocabulary_embeddings(
        clip_with_text_tower_of(data, data["hyper_parameters"]["clip"]["model_name"], "cpu")
    ).float()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", help="default: the shipped demo weights")
    parser.add_argument(
        "--seeds",
        type=seed_range,
        default=seed_range("1000-1019"),
        help="scene seeds FIRST-LAST (default 1000-1019; the demo's is 11)",
    )
    parser.add_argument("--views", type=int, default=16, help="test-time views (the demo's 16)")
    parser.add_argument(
        "--scene-scale",
        type=float,
        default=1.0,
        help="model.scene_scale: the map scaled by this before the model (the demo's 1.0)",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=0,
        help="model.num_queries: query seeds per pass (default 0: the checkpoint's)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--object-sizes",
        choices=tuple(OBJECT_SIZES),
        default="compact",
        help="the scenes' object size ranges (the demo's: compact)",
    )
    parser.add_argument(
        "--perfect-features",
        action="store_true",
        help="fuse each pixel's true class embedding instead of the image tower's features",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoints = args.checkpoints or [find_default_checkpoint()]
    demo_classes = [object_phrase(q) for q in DEFAULT_QUERIES]
    scenes = [
        render_demo_frames(
            seed, 16, kind="tabletop", classes=DEMO_CLASSES, object_sizes=args.object_sizes
        )
        for seed in args.seeds
    ]
    print(
        f"# demo-like scenes: seeds {args.seeds[0]}-{args.seeds[-1]} ({len(scenes)}), 16 frames each, "
        f"{args.views} views, scene scale {args.scene_scale}, {args.threads} threads, "
        f"{args.object_sizes} object sizes, "
        f"{args.queries or 'the trained number of'} queries"
    )
    for path in checkpoints:
        pipeline = build_pipeline(
            PipelineSettings(
                device="cpu",
                checkpoint=path,
                contrast_phrases=tuple(CLASS_NAMES),
                test_time_views=args.views,
                scene_scale=args.scene_scale,
                num_queries=args.queries,
            ),
            log=lambda *_: None,
        )
        perfect = None
        if args.perfect_features:
            if pipeline.dense_features is None:
                parser.error(
                    f"--perfect-features: {path} has no trained image tower (no dense features)"
                )
            perfect = tower_targets(path)
        hits, passed, seconds = [], 0, []
        missed, answered_on = collections.Counter(), collections.Counter()
        for scene, frames in scenes:
            results, took = score_scene(pipeline, scene, frames, perfect)
            hits += [where is None for where in results.values()]
            seconds.append(took)
            passed += all(results.get(name) is None for name in demo_classes)
            for name, where in results.items():
                missed[name] += where is not None
                if where is not None:
                    answered_on[f"{name}->{where}"] += 1
        label = f"{path} (perfect features)" if perfect is not None else path
        print(
            f"{label}: query top-1 {np.mean(hits):.1%} ({sum(hits)}/{len(hits)}); demo's three queries all "
            f"right in {passed}/{len(scenes)} scenes; misses by class {dict(missed)}, answered on "
            f"{dict(sorted(answered_on.items()))}; median {np.median(seconds):.1f} s per scene"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
