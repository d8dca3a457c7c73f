"""`sole-ros segment FILE --query TEXT...`: open-vocabulary instances in one point file.

Reads .ply/.pcd/.npz, segments with SOLE, prints the instances (or one JSON document), and writes
a coloured PLY and a PNG. Point indices in the JSON are rows of the input file (before NaN rows
were dropped, and before --downsample), so they can be used on the file directly.
"""

from __future__ import annotations

import os
import time

import numpy as np

from sole_ros.cli.errors import CliError, log
from sole_ros.cli.model_options import (
    add_model_arguments,
    add_query_arguments,
    check_queries,
    describe_model,
    load_segmenter,
    settings_from_args,
)
from sole_ros.cli.results import instance_record, print_json, print_table, title_for, write_outputs

# the node's parameter groups offered as options (a point file needs no scene map: no scene.*)
GROUPS = ("model", "query")
# Time and memory grow with the points: on one laptop CPU core a 2 M-point room scan segments in
# about 30 s within 2 GB, 1 M points filling a volume (more voxels per point) in about 70 s within
# 5 GB, and 10 M points had not finished after 150 s at 11 GB.
DEFAULT_MAX_POINTS = 2_000_000
# Rows --downsample reads at most: reading and thinning take about 1.3 GB and 8 s per 10 M rows.
DOWNSAMPLE_MAX_ROWS = 20_000_000
DOWNSAMPLE_RANGE = (0.001, 10.0)  # metres


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a point file (.ply/.pcd/.npz) with language queries",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None,
        epilog="example: sole-ros segment scene.ply --query mug 'office chair' --checkpoint scannet200.ckpt; "
        "on a real tabletop scan with the demo weights: sole-ros segment scan.pcd --query mug "
        "--test-time-views 16 --scene-scale 0.65 --contrast-phrases 'bowl, bottle'",
    )
    parser.add_argument("file", metavar="FILE", help="a .ply, .pcd or .npz scene (metres)")
    parser.add_argument(
        "--max-points",
        type=int,
        default=DEFAULT_MAX_POINTS,
        metavar="N",
        help="refuse files of more than N points, as soon as the header says so (default: "
        f"{DEFAULT_MAX_POINTS:,}: a room scan that size segments in about 30 s within 2 GB on "
        "one laptop CPU core; time and memory grow with the points); with --downsample, the "
        "bound applies to the points left",
    )
    parser.add_argument(
        "--downsample",
        type=float,
        default=None,
        metavar="VOXEL",
        help="first keep one point per cube of VOXEL metres (the first in the file; indices still "
        f"name the file's rows), so larger files can be used: reads up to "
        f"{DOWNSAMPLE_MAX_ROWS:,} rows; {DOWNSAMPLE_RANGE[0]:g}..{DOWNSAMPLE_RANGE[1]:g}, e.g. "
        "0.01 (the model's own voxels are 0.02)",
    )
    add_query_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    settings = settings_from_args(args, GROUPS)
    phrases = check_queries(args, settings)
    scene = read_scene(args)

    start = time.perf_counter()
    segmenter, _, device = load_segmenter(settings, args.seed)
    loaded = time.perf_counter()
    colors = scene.colors if scene.colors is not None else np.full((len(scene), 3), 0.5, np.float32)
    features = scene.features
    clip_dim = segmenter.model.config.clip_dim
    if features is not None and features.shape[1] != clip_dim:
        raise CliError(
            f"{args.file}: its per-point features are {features.shape[1]}-d but the model fuses "
            f"{clip_dim}-d CLIP features; drop them or use a matching model"
        )
    try:
        segmenter.set_scene(scene.points, colors, features)
        encoded = time.perf_counter()
        # as the node answers: settings.top_k candidates ranked, fragments under query.min_points
        # dropped after ranking (so none takes a larger answer's place), then the first --top-k
        instances = segmenter.query(phrases, min_score=args.min_score)
        instances = [i for i in instances if i.num_points >= settings.min_points][: args.top_k]
    except ValueError as error:  # the scene itself is unusable (a single voxel, too far out...)
        raise CliError(f"{args.file}: cannot segment: {error}") from None
    answered = time.perf_counter()

    stem = os.path.splitext(os.path.basename(args.file))[0]
    outputs = write_outputs(
        args.out_dir,
        stem,
        scene.points,
        colors,
        instances,
        title_for(phrases, instances),
        source_index=scene.source_index,
    )
    if args.json:
        print_json(
            {
                "input": {
                    "path": args.file,
                    "rows": scene.num_input,
                    "points": len(scene),
                    "downsample": args.downsample,
                    "features": None if features is None else int(features.shape[1]),
                },
                "queries": phrases,
                "model": {
                    **describe_model(settings, getattr(segmenter, "top_k", None)),
                    "device": str(device),
                },
                "instances": [
                    instance_record(rank, inst, scene.to_input_indices(inst.point_indices))
                    for rank, inst in enumerate(instances, 1)
                ],
                "outputs": outputs,
                "seconds": {
                    "load": round(loaded - start, 3),
                    "encode": round(encoded - loaded, 3),
                    "query": round(answered - encoded, 3),
                },
            }
        )
    else:
        print_table(instances, phrases)
        print(f"wrote {outputs['ply']} and {outputs['png']}")
        log(
            f"model loaded in {loaded - start:.1f} s, scene encoded in {encoded - loaded:.1f} s, "
            f"query answered in {answered - encoded:.2f} s on {device}"
        )
    return 0


def read_scene(args):
    """The file's points, within --max-points (refused from the header, before the data is read),
    voxel-thinned first with --downsample; CliError naming the option to change."""
    from sole_ros.pointfiles import (
        PointFileError,
        TooManyPointsError,
        read_point_file,
        voxel_downsample,
    )

    if args.max_points < 1:
        raise CliError(f"--max-points must be at least 1, not {args.max_points}")
    voxel = args.downsample
    if voxel is not None and not DOWNSAMPLE_RANGE[0] <= voxel <= DOWNSAMPLE_RANGE[1]:
        raise CliError(
            f"--downsample must be within {DOWNSAMPLE_RANGE[0]:g}..{DOWNSAMPLE_RANGE[1]:g} m, not {voxel}"
        )
    try:
        scene = read_point_file(
            args.file,
            max_points=args.max_points
            if voxel is None
            else max(args.max_points, DOWNSAMPLE_MAX_ROWS),
        )
    except TooManyPointsError as error:
        if voxel is None:
            raise CliError(
                f"{args.file}: {error.count:,} points, more than --max-points {error.limit:,}: thin it "
                f"with --downsample VOXEL (e.g. 0.01 m) or raise --max-points"
            ) from None
        raise CliError(
            f"{args.file}: {error.count:,} rows, more than --downsample reads ({error.limit:,}, or "
            f"--max-points when larger): thin the file with another tool first"
        ) from None
    except PointFileError as error:
        raise CliError(str(error)) from None
    dropped = scene.num_input - len(scene)
    log(
        f"{args.file}: {len(scene)} points"
        + (f" ({dropped} non-finite rows dropped)" if dropped else "")
    )
    if voxel is not None:
        scene = voxel_downsample(scene, voxel)
        log(
            f"{len(scene)} points after --downsample {voxel:g} (the first point of each {voxel:g} m cube)"
        )
    if len(scene) > args.max_points:  # only --downsample reads more rows than --max-points
        raise CliError(
            f"{args.file}: {len(scene):,} points after --downsample {voxel or 0:g}, more than "
            f"--max-points {args.max_points:,}: use a larger voxel or raise --max-points"
        )
    return scene
