"""Query seeds per pass (model.num_queries): masks found, AP and time, on held-out synthetic scans.

SOLE seeds its queries at farthest-point samples of the scene, so a checkpoint runs with any
number of them. For each count in one run, on the evaluation scans of the checkpoint's own run
(or other seeds): the coverage (the share of objects some class-agnostic mask covers at IoU 0.5,
whatever its score: what AP50 could reach with a perfect ranking), class-agnostic AP / AP50, the
answers per scene, and the median time to encode a scan and to segment it class-agnostically. The
first count is the reference of the time ratios.

    python bench/bench_queries.py [--queries 0 64 128] [--first-seed 192 --count 16] [--max-points 400000]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sole_ros.evaluation import SceneGroundTruth, coverage, evaluate_instances  # noqa: E402
from sole_ros.model.config import SoleConfig  # noqa: E402
from sole_ros.pipeline import PipelineSettings, find_default_checkpoint, load_segmenter  # noqa: E402
from sole_ros.training.checkpointing import load_checkpoint  # noqa: E402
from sole_ros.training.components import CLASS_PROMPT, build_dataset, text_encoders  # noqa: E402
from sole_ros.training.config import TrainConfig  # noqa: E402
from sole_ros.training.evaluate import predict_agnostic, vocabulary  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="a checkpoint of `sole-ros train` (default: the demo weights)",
    )
    parser.add_argument(
        "--queries",
        nargs="+",
        type=int,
        default=[0, 64, 128],
        help="query counts to compare; 0: the trained count (default: 0 64 128)",
    )
    parser.add_argument("--views", type=int, default=1, help="model.test_time_views (default: 1)")
    parser.add_argument(
        "--first-seed",
        type=int,
        help="first seed of the scans (default: the run's evaluation seeds)",
    )
    parser.add_argument("--count", type=int, help="number of scans (with --first-seed)")
    parser.add_argument(
        "--max-points",
        type=int,
        help="points per scan (default: the run's; 400000 keeps every point)",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or find_default_checkpoint()
    if not checkpoint:
        parser.error("no --checkpoint and no demo weights in sole_ros/weights")
    hp = load_checkpoint(checkpoint).get("hyper_parameters", {})
    if (
        "train_config" not in hp
        or TrainConfig.from_dict(hp["train_config"]).data.kind != "synthetic"
    ):
        parser.error(f"{checkpoint}: not a checkpoint of a run on synthetic scenes")
    config = TrainConfig.from_dict(hp["train_config"])
    if args.first_seed is not None:  # the evaluation split starts at synthetic_count
        config.data.synthetic_count, config.data.synthetic_eval_count = (
            args.first_seed,
            args.count or 8,
        )
    if args.max_points:
        config.data.synthetic_max_points = args.max_points
    top_k = SoleConfig.from_dict(hp["sole_config"]).top_k
    samples = None
    print(
        f"checkpoint {checkpoint}, seeds {config.data.synthetic_count}-"
        f"{config.data.synthetic_count + config.data.synthetic_eval_count - 1}, {args.views} view(s), "
        f"{args.threads} thread(s)"
    )
    print(
        f"{'queries':>7} {'coverage':>8} {'AP':>6} {'AP50':>6} {'answers':>7} {'encode s':>9} {'segment s':>9}"
    )
    first = None
    for queries in args.queries:
        settings = PipelineSettings(
            checkpoint=checkpoint,
            device="cpu",
            prompt=CLASS_PROMPT,
            top_k=top_k,
            dense_features=False,
            test_time_views=args.views,
            num_queries=queries,
        )
        segmenter, clip = load_segmenter(settings, torch.device("cpu"), log=lambda *_: None)
        if samples is None:  # the scans (with their stand-in point features) once, for every count
            dataset = build_dataset(config, "eval", text_encoders(clip, "cpu")[1])
            class_ids, _, _ = vocabulary(config, dataset)
            samples = [dataset[i] for i in range(len(dataset))]
        encode, segment, pairs = [], [], []
        for index, sample in enumerate(samples):
            start = time.perf_counter()
            segmenter.set_scene(sample.points, sample.colors, sample.clip_features, version=index)
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            prediction = predict_agnostic(segmenter, sample)
            segment.append(time.perf_counter() - start)
            pairs.append((SceneGroundTruth(sample.semantic, sample.instance), prediction))
        ap = evaluate_instances(
            pairs,
            class_ids,
            [str(i) for i in class_ids],
            min_region_size=30,
            agnostic_predictions=[p for _, p in pairs],
        ).summary()
        covered = coverage(pairs, class_ids, min_region_size=30)
        answers = statistics.mean(p.masks.shape[1] for _, p in pairs)
        row = (statistics.median(encode), statistics.median(segment))
        first = first or row
        print(
            f"{segmenter.model.config.num_queries:>7} {covered:>8.3f} {ap['agnostic_ap']:>6.3f} "
            f"{ap['agnostic_ap50']:>6.3f} "
            f"{answers:>7.1f} {row[0]:>9.3f} {row[1]:>9.3f}   (encode {row[0] / first[0]:.1f}x, segment "
            f"{row[1] / first[1]:.1f}x the first count)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
