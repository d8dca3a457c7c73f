"""Test-time views: what they cost and what they give, on the real mOSD scans with the demo weights.

For each setting (number of views, scene scale, and optionally the query count, model.num_queries)
in one run: the time to encode a scan (every view),
the time of one query ("object" with the nine class names as contrast phrases, as the demo asks)
and the class-agnostic AP / AP50 over the scans (sole_ros.evaluation, min region 30 points). The
first setting is SOLE's single pass; the others are reported against it.

    python bench/bench_views.py [--data ../shared/data/mosd] [--settings 1x1.0 16x1.0 16x0.65 1x1.0x128] [--threads 2]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from sole_ros.datasets.mosd import OBJECT, MosdScans  # noqa: E402
from sole_ros.evaluation import SceneGroundTruth, evaluate_instances  # noqa: E402
from sole_ros.pipeline import PipelineSettings, find_default_checkpoint, load_segmenter  # noqa: E402
from sole_ros.synthetic import CLASS_NAMES  # noqa: E402
from sole_ros.training.evaluate import predict_agnostic  # noqa: E402

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mosd"


def parse_setting(text: str) -> tuple[int, float, int]:
    """ "16x0.65" -> (16, 0.65, 0); "1x1.0x128" -> (1, 1.0, 128 queries; 0: the trained count)."""
    views, _, rest = text.partition("x")
    scale, _, queries = rest.partition("x")
    try:
        return int(views), float(scale or 1.0), int(queries or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected VIEWSxSCALE[xQUERIES], e.g. 16x0.65"
        ) from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=pathlib.Path, default=DEFAULT_DATA, help="folder of mOSD .pcd scans"
    )
    parser.add_argument("--checkpoint", default=None, help="default: the demo weights")
    parser.add_argument(
        "--settings",
        nargs="+",
        type=parse_setting,
        default=[(1, 1.0, 0), (16, 1.0, 0), (16, 0.65, 0)],
        metavar="VIEWSxSCALE[xQUERIES]",
        help="settings to compare (default: 1x1.0 16x1.0 16x0.65; xQUERIES: model.num_queries)",
    )
    parser.add_argument(
        "--jitter", type=float, default=0.15, help="model.view_scale_jitter (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or find_default_checkpoint()
    if not checkpoint:
        parser.error("no --checkpoint and no demo weights in sole_ros/weights")
    scans = MosdScans(args.data)
    samples = [scans[i] for i in range(len(scans))]
    contrast = tuple(CLASS_NAMES)
    print(f"{len(samples)} scans from {args.data}, checkpoint {checkpoint}, {args.threads} threads")
    print(
        f"{'views x scale':>14} {'queries':>7} {'encode s':>9} {'query s':>8} {'AP':>6} {'AP50':>6}"
    )
    first = None
    for views, scale, queries in args.settings:
        settings = PipelineSettings(
            checkpoint=checkpoint,
            device="cpu",
            dense_features=False,
            test_time_views=views,
            scene_scale=scale,
            view_scale_jitter=args.jitter,
            contrast_phrases=contrast,
            num_queries=queries,
        )
        segmenter, _ = load_segmenter(settings, torch.device("cpu"), log=lambda *_: None)
        encode, query, pairs, agnostic = [], [], [], []
        for index, sample in enumerate(samples):
            start = time.perf_counter()
            segmenter.set_scene(sample.points, sample.colors, None, version=index)
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            segmenter.query(["object"])
            query.append(time.perf_counter() - start)
            agnostic.append(predict_agnostic(segmenter, sample))
            pairs.append((SceneGroundTruth(sample.semantic, sample.instance), agnostic[-1]))
        ap = evaluate_instances(
            pairs, [OBJECT], ["object"], min_region_size=30, agnostic_predictions=agnostic
        ).summary()
        row = (statistics.median(encode), statistics.median(query))
        first = first or row
        used = segmenter.model.config.num_queries  # MultiViewSegmenter.model: its base's
        print(
            f"{views:>6} x {scale:<5} {used:>7} {row[0]:>9.3f} {row[1]:>8.3f} {ap['agnostic_ap']:>6.3f} "
            f"{ap['agnostic_ap50']:>6.3f}   (encode {row[0] / first[0]:.1f}x, query {row[1] / first[1]:.1f}x "
            f"the first setting)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
