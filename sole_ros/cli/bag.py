"""`sole-ros bag PATH --query TEXT...`: replay a recorded ROS 2 bag, then answer language queries.

The bag (mcap or sqlite3; the folder or its storage file) is read without ROS. Its depth + colour
images (or point clouds) are fused into the scene map exactly as sole_node does, the map is
segmented, and the queries are answered: printed (or one JSON document), plus a coloured PLY and
a PNG of the map. Topics not given are found by type; poses come from an Odometry / PoseStamped /
TransformStamped topic or from /tf.
"""

from __future__ import annotations

import os
import time

from sole_ros.cli.errors import CliError, log
from sole_ros.cli.model_options import (
    add_model_arguments,
    add_query_arguments,
    add_scene_arguments,
    build_pipeline,
    check_queries,
    describe_model,
    settings_from_args,
)
from sole_ros.cli.results import instance_record, print_json, print_table, title_for, write_outputs
from sole_ros.messages.poses import POSE_END_TOLERANCE
from sole_ros.settings_table import BY_NAME

# the node's parameter groups offered as options
GROUPS = ("model", "query", "scene")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bag",
        help="replay a ROS 2 bag (mcap/sqlite3) through scene fusion and answer queries",
        description=__doc__.split("\n\n", 1)[1].strip() if __doc__ else None,
        epilog="example: sole-ros bag run1/ --query mug chair --checkpoint scannet200.ckpt --pose-topic /odom",
    )
    parser.add_argument("path", metavar="PATH", help="the bag folder, or its .mcap / .db3 file")
    add_query_arguments(parser)
    _add_topic_arguments(parser)
    _add_pose_arguments(parser)
    scene = add_scene_arguments(parser)
    scene.add_argument("--max-frames", type=int, metavar="N", help="stop after N fused frames")
    add_model_arguments(parser)
    parser.set_defaults(handler=run)


def _add_topic_arguments(parser) -> None:
    topics = parser.add_argument_group("topics", "found by message type when not given")
    topics.add_argument(
        "--points-topic", metavar="TOPIC", help="sensor_msgs/PointCloud2 depth clouds"
    )
    topics.add_argument(
        "--depth-topic", metavar="TOPIC", help="sensor_msgs/Image depth (16UC1 mm or 32FC1 m)"
    )
    topics.add_argument(
        "--color-topic", metavar="TOPIC", help="sensor_msgs/Image colour registered to depth"
    )
    topics.add_argument(
        "--info-topic", metavar="TOPIC", help="sensor_msgs/CameraInfo of the depth images"
    )
    topics.add_argument(
        "--pose-topic",
        metavar="TOPIC",
        help="nav_msgs/Odometry, geometry_msgs/PoseStamped or TransformStamped of the sensor's "
        "base; 'tf' for /tf + /tf_static",
    )


def _add_pose_arguments(parser) -> None:
    poses = parser.add_argument_group("poses")
    poses.add_argument(
        "--fixed-frame",
        metavar="FRAME",
        help="with /tf: the frame to build the scene in "
        "(default: the root of the sensor's tf tree)",
    )
    poses.add_argument(
        "--sensor-extrinsic",
        type=float,
        nargs=6,
        metavar=("X", "Y", "Z", "ROLL", "PITCH", "YAW"),
        help="with a pose topic: the sensor's pose on the base (metres, radians; default: none)",
    )
    poses.add_argument(
        "--static-sensor", action="store_true", help="no poses: the sensor did not move"
    )
    poses.add_argument(
        "--sync-tolerance",
        type=float,
        default=BY_NAME["inputs.sync_slop"].default,
        metavar="S",
        help="seconds between a depth image and its colour image, as the node's inputs.sync_slop "
        "(default: %(default)s)",
    )
    poses.add_argument(
        "--pose-tolerance",
        type=float,
        default=POSE_END_TOLERANCE,
        metavar="S",
        help="seconds a frame may lie outside the recorded poses (default: %(default)s)",
    )


def _topics(args):
    from sole_ros.bag import BagTopics

    return BagTopics(
        points=args.points_topic,
        depth=args.depth_topic,
        color=args.color_topic,
        info=args.info_topic,
        pose=args.pose_topic,
    )


def run(args) -> int:
    from sole_ros.bag import BagError

    settings = settings_from_args(args, GROUPS)
    phrases = check_queries(args, settings)
    _check_replay_arguments(args)
    # The bag is checked before the (slow) model is loaded: a wrong path or topic fails at once.
    replay = _open_replay(args)
    with replay:
        start = time.perf_counter()
        pipeline = build_pipeline(settings, args.seed)
        loaded = time.perf_counter()
        try:
            summary = replay.replay(pipeline)
        except BagError as error:
            raise CliError(str(error)) from None
    fused = time.perf_counter()
    log(summary.describe())
    segmentation, answer = _segment_and_query(pipeline, phrases, args, summary)
    answered = time.perf_counter()
    seconds = {"load": loaded - start, "fuse": fused - loaded, "query": answered - fused}
    snapshot = segmentation.snapshot
    instances = answer.instances
    outputs = write_outputs(
        args.out_dir,
        _output_stem(args.path),
        snapshot.coords,
        snapshot.colors,
        instances,
        title_for(phrases, instances),
    )
    if args.json:
        _print_json_report(
            args, settings, phrases, summary, pipeline, segmentation, instances, outputs, seconds
        )
    else:
        _print_text_report(summary, snapshot, instances, phrases, outputs, seconds, pipeline.device)
    return 0


def _check_replay_arguments(args) -> None:
    """CliError for a replay option out of range or contradicting another."""
    for name in ("sync_tolerance", "pose_tolerance"):
        if not getattr(args, name) > 0:
            raise CliError(
                f"--{name.replace('_', '-')} must be positive, not {getattr(args, name)}"
            )
    if args.max_frames is not None and args.max_frames <= 0:
        raise CliError(f"--max-frames must be positive, not {args.max_frames}")
    if args.static_sensor and args.pose_topic:
        raise CliError("--static-sensor and --pose-topic contradict each other: give one")


def _open_replay(args):
    """The bag opened for replay with the command line's topics and options; CliError if not."""
    from sole_ros.bag import BagError, BagReplay, ReplayOptions

    options = ReplayOptions(
        fixed_frame=args.fixed_frame,
        sensor_extrinsic=args.sensor_extrinsic,
        static_sensor=args.static_sensor,
        sync_tolerance=args.sync_tolerance,
        pose_tolerance=args.pose_tolerance,
        max_frames=args.max_frames,
    )
    try:
        return BagReplay(args.path, _topics(args), options, log=log)
    except BagError as error:
        raise CliError(str(error)) from None


def _segment_and_query(pipeline, phrases, args, summary):
    """(segmentation, answer) of the fused map; CliError when the map cannot be queried."""
    from sole_ros.pipeline import QueryRejected

    try:
        segmentation = pipeline.segment()
        answer = pipeline.query(phrases, max_results=args.top_k, min_score=args.min_score)
    except QueryRejected as error:  # e.g. nothing could be fused
        raise CliError(f"{args.path}: {error} ({summary.describe()})") from None
    return segmentation, answer


def _output_stem(path: str) -> str:
    """The bag's name without extension, the written files' stem."""
    stem = os.path.basename(os.path.normpath(path))
    return os.path.splitext(stem)[0] or "bag"


def _print_json_report(
    args, settings, phrases, summary, pipeline, segmentation, instances, outputs, seconds
) -> None:
    snapshot = segmentation.snapshot
    print_json(
        {
            "input": {
                "path": args.path,
                "frames": summary.frames,
                "dropped": dict(summary.dropped),
                "counters": summary.input_counts(),
                "topics": {k: v for k, v in vars(summary.topics).items() if v},
                "pose_source": summary.pose_source,
                "map_voxels": len(snapshot),
                "voxel_size": snapshot.voxel_size,
            },
            "queries": phrases,
            "model": {
                **describe_model(settings, getattr(pipeline.segmenter, "top_k", None)),
                "device": str(pipeline.device),
            },
            # Point indices are rows of the written PLY (the map's voxel centres).
            "instances": [
                instance_record(rank, inst, inst.point_indices)
                for rank, inst in enumerate(instances, 1)
            ],
            "outputs": outputs,
            "seconds": {
                "load": round(seconds["load"], 3),
                "fuse": round(seconds["fuse"], 3),
                "segment": round(segmentation.seconds, 3),
                "query": round(seconds["query"], 3),
            },
        }
    )


def _print_text_report(summary, snapshot, instances, phrases, outputs, seconds, device) -> None:
    print(f"{summary.frames} frames fused into {len(snapshot)} voxels of {snapshot.voxel_size:g} m")
    print_table(instances, phrases)
    print(f"wrote {outputs['ply']} and {outputs['png']}")
    log(
        f"model loaded in {seconds['load']:.1f} s, bag fused in {seconds['fuse']:.1f} s, "
        f"segmented and answered in {seconds['query']:.1f} s on {device}"
    )
