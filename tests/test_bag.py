"""ROS-free message decoding and `sole-ros bag` replay of real rosbag2 files.

Bags are written with the rosbags library (mcap and sqlite3 storage) from a short synthetic RGB-D
sequence with ground-truth poses; the replay must give back those frames and poses, and the CLI
must fuse them, segment and answer in a subprocess. The model has random tiny weights: no
pretrained weights can be had here, so answers are checked for their form, not their meaning.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

pytest.importorskip("rosbags")

from bag_support import (  # noqa: E402
    BASE_FROM_CAMERA,
    CAMERA_FRAME,
    camera_info,
    color_image,
    depth_image,
    odometry,
    organised_cloud,
    typestore,
    write_cloud_tf_bag,
    write_rgbd_bag,
    write_tf_rgbd_bag,
)
from conftest import ROOT  # noqa: E402
from redwood_support import (  # noqa: E402
    CAMERA_LINK,
    OPTICAL,
    direct_voxel_count,
    load_redwood,
    node_default_voxel_count,
    node_voxel_map,
    stream,
    tf_chain,
    world_from_camera_link,
)

from sole_ros.bag import BagError, BagReplay, BagTopics, ReplayOptions  # noqa: E402
from sole_ros.messages import (  # noqa: E402
    MalformedMessage,
    camera_matrix,
    color_to_rgb,
    depth_to_metres,
    matrix_from_pose_stamped,
    read_points,
)
from sole_ros.messages.input_counters import NO_COLOUR_PAIR, NO_POSE, InputCounters  # noqa: E402
from sole_ros.messages.transform_tree import PoseLookupError, TransformTree  # noqa: E402
from sole_ros.pointfiles import read_point_file  # noqa: E402

TINY = [
    "--config",
    "tiny",
    "--random-weights",
    "--clip-model",
    "sole-tiny",
    "--clip-pretrained",
    "",
    "--device",
    "cpu",
]
NUM_FRAMES = 6


@pytest.fixture(scope="module")
def frames():
    from sole_ros.synthetic import generate_scene, render_sequence

    return list(
        render_sequence(generate_scene(3, "tabletop"), NUM_FRAMES, width=160, height=120, seed=0)
    )


@pytest.fixture(scope="module")
def bags(frames, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bags")
    return {
        storage: write_rgbd_bag(folder / f"run_{storage}", frames, storage)
        for storage in ("mcap", "sqlite3")
    }


def sole_ros(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The command line in its own process, from the checkout (the code under test)."""
    return subprocess.run(
        [sys.executable, "-m", "sole_ros.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- decoding without ROS --------------------------------------------------------------------------


def test_decoding_modules_import_no_ros():
    code = (
        "import sys, sole_ros.messages, sole_ros.messages.transform_tree, sole_ros.bag, sole_ros.pointfiles, "
        "sole_ros.visualize, sole_ros.cli; sole_ros.cli.build_parser(); "
        "ros = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'geometry_msgs', "
        "'nav_msgs', 'std_msgs', 'builtin_interfaces', 'tf2_msgs', 'rosidl_runtime_py')); "
        "assert not ros, ros"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_rosbags_messages_decode_like_ros_ones(frames):
    ts = typestore()
    frame = frames[2]
    depth = depth_to_metres(depth_image(ts, 1.0, frame.depth))
    valid = frame.depth > 0
    assert np.isnan(depth[~valid]).all()
    np.testing.assert_allclose(depth[valid], frame.depth[valid], atol=5e-4)  # millimetre steps
    np.testing.assert_array_equal(
        color_to_rgb(color_image(ts, 1.0, frame.color)), frame.color
    )  # bgr8 swapped
    info = camera_info(ts, 1.0, frame.K, 160, 120)
    info.k = np.frombuffer(
        frame.K.astype(np.float64).tobytes()
    )  # read-only, as rosbags deserialises it
    K = camera_matrix(info, (160, 120))
    np.testing.assert_allclose(K, frame.K)
    np.testing.assert_allclose(
        camera_matrix(info, (320, 240))[0, 0], 2 * frame.K[0, 0]
    )  # a resized stream
    np.testing.assert_allclose(
        matrix_from_pose_stamped(odometry(ts, 1.0, frame.pose)), frame.pose, atol=1e-12
    )

    cloud = organised_cloud(ts, 1.0, frame.depth, frame.K, frame.color)
    points, rgb = read_points(cloud)
    assert points.shape[0] == valid.sum()  # NaN (no reading) dropped
    np.testing.assert_allclose(points[:, 2], frame.depth[valid], rtol=1e-6)
    np.testing.assert_array_equal(rgb, frame.color[valid])
    cloud.row_step = 7  # inconsistent with width x point_step
    with pytest.raises(MalformedMessage, match="row_step"):
        read_points(cloud)


def test_transform_tree_composes_static_and_interpolated_links():
    def pose(x, yaw):
        m = np.eye(4)
        m[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
        m[:3, 3] = [x, 0, 0]
        return m

    tree = TransformTree()
    tree.add("map", "odom", 0.0, pose(1.0, 0.0), static=True)
    tree.add("odom", "base_link", 10.0, pose(0.0, 0.0))
    tree.add(
        "/odom", "base_link", 11.0, pose(2.0, np.pi / 2)
    )  # a leading slash names the same frame
    tree.add("base_link", "camera", 0.0, BASE_FROM_CAMERA, static=True)
    tree.add("base_link", "lidar", 0.0, pose(0.1, 0.0), static=True)
    assert tree.root_of("camera") == "map"
    expected = (
        pose(1.0, 0.0) @ pose(1.0, np.pi / 4) @ BASE_FROM_CAMERA
    )  # halfway: x 1, yaw 45 degrees
    np.testing.assert_allclose(tree.lookup("map", "camera", 10.5), expected, atol=1e-12)
    # between two leaves: through their common ancestor only (no dynamic link needed)
    np.testing.assert_allclose(
        tree.lookup("lidar", "camera", 99.0),
        np.linalg.inv(pose(0.1, 0.0)) @ BASE_FROM_CAMERA,
        atol=1e-12,
    )
    with pytest.raises(PoseLookupError, match="odom -> base_link"):
        tree.lookup("map", "camera", 20.0)
    with pytest.raises(PoseLookupError, match="not in the tf tree"):
        tree.lookup("map", "gripper", 10.5)
    tree.add("world", "elsewhere", 0.0, np.eye(4), static=True)
    with pytest.raises(PoseLookupError, match="not connected"):
        tree.lookup("map", "elsewhere", 10.5)


# --- replay ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_gives_back_the_recorded_frames(bags, frames, storage):
    with BagReplay(bags[storage], log=lambda *_: None) as replay:
        assert replay.topics == BagTopics(
            depth="/camera/depth/image_raw",
            color="/camera/color/image_raw",
            info="/camera/color/camera_info",
            pose="/odom",
        )
        dropped = collections.Counter()
        got = list(replay.frames(dropped))
    assert not dropped and len(got) == NUM_FRAMES
    for frame, truth in zip(got, frames):
        assert frame.stamp == pytest.approx(100.0 + truth.stamp) and frame.frame_id == CAMERA_FRAME
        np.testing.assert_allclose(
            frame.pose, truth.pose, atol=1e-9
        )  # odometry recorded after the images
        np.testing.assert_allclose(np.nan_to_num(frame.depth), truth.depth, atol=5e-4)
        np.testing.assert_array_equal(frame.color, truth.color)
        np.testing.assert_allclose(frame.K, truth.K)


def test_replay_pairs_and_sizes_colour_by_the_nodes_rules(frames, tmp_path):
    """The bag replay's tolerance is the node's inputs.sync_slop, and colour of another size is
    resized when it is a scaled view of the depth image, refused (counted) otherwise, as in the node."""
    import dataclasses

    from sole_ros.messages.input_counters import INVALID
    from sole_ros.settings_table import BY_NAME

    assert ReplayOptions().sync_tolerance == BY_NAME["inputs.sync_slop"].default
    doubled = [
        dataclasses.replace(f, color=f.color.repeat(2, axis=0).repeat(2, axis=1)) for f in frames
    ]
    logs = []
    with BagReplay(write_rgbd_bag(tmp_path / "doubled", doubled), log=logs.append) as replay:
        got = list(replay.frames())
    assert len(got) == NUM_FRAMES and len([line for line in logs if "resized" in line]) == 1, logs
    for frame, truth in zip(got, frames):
        assert frame.color.shape == truth.color.shape
        assert (
            np.abs(frame.color.astype(int) - truth.color).mean() < 10
        )  # bilinear: edges blur a little
    wide = [dataclasses.replace(f, color=f.color.repeat(2, axis=1)) for f in frames]
    counters = InputCounters()
    with BagReplay(write_rgbd_bag(tmp_path / "wide", wide), log=logs.append) as replay:
        assert list(replay.frames(counters=counters)) == []
    assert counters.snapshot()["depth"].dropped == {INVALID: NUM_FRAMES}
    assert any("aspect ratios differ" in line for line in logs), logs


def test_replay_of_clouds_with_poses_from_tf(frames, tmp_path):
    path = write_cloud_tf_bag(tmp_path / "clouds", frames)
    with BagReplay(
        path / "clouds.mcap", log=lambda *_: None
    ) as replay:  # the storage file names the bag too
        assert replay.topics.points == "/camera/depth/points" and replay.pose_source == "/tf"
        got = list(replay.frames())
    assert len(got) == NUM_FRAMES
    for frame, truth in zip(got, frames):
        np.testing.assert_allclose(
            frame.pose, truth.pose, atol=1e-9
        )  # map <- odom <- base_link <- camera
        valid = truth.depth > 0
        np.testing.assert_array_equal(frame.point_colors, truth.color[valid])
        world = frame.points @ frame.pose[:3, :3].T + frame.pose[:3, 3]
        from sole_ros.synthetic import backproject

        expected, _ = backproject(truth.depth, truth.K, truth.pose)
        np.testing.assert_allclose(np.sort(world[:, 2]), np.sort(expected[:, 2]), atol=1e-4)


def test_replay_refuses_what_it_cannot_use(bags, tmp_path):
    with pytest.raises(BagError, match="no topic '/camera/missing'"):
        BagReplay(bags["mcap"], BagTopics(depth="/camera/missing"))
    with pytest.raises(BagError, match="is nav_msgs/msg/Odometry, but depth images must be"):
        BagReplay(bags["mcap"], BagTopics(depth="/odom"))
    with pytest.raises(BagError, match="no /tf"):
        BagReplay(bags["mcap"], BagTopics(pose="tf"))
    # Without odometry and without /tf there is no pose, unless the sensor is declared static.
    from rosbags.rosbag2 import Writer

    ts = typestore()
    path = tmp_path / "still"
    with Writer(path, version=9) as writer:
        c = writer.add_connection(
            "/camera/depth/points", "sensor_msgs/msg/PointCloud2", typestore=ts
        )
        depth = np.full((4, 5), 1.5, np.float32)
        writer.write(
            c,
            10**9,
            ts.serialize_cdr(
                organised_cloud(
                    ts, 1.0, depth, np.diag([5.0, 5.0, 1.0]), np.zeros((4, 5, 3), np.uint8)
                ),
                c.msgtype,
            ),
        )
    with pytest.raises(BagError, match="no poses in the bag"):
        BagReplay(path)
    with BagReplay(path, options=ReplayOptions(static_sensor=True), log=lambda *_: None) as replay:
        (frame,) = list(replay.frames())
        np.testing.assert_array_equal(frame.pose, np.eye(4))
        assert frame.points.shape == (20, 3)


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_command_fuses_segments_and_answers(bags, tmp_path, storage):
    out = tmp_path / "out"
    result = sole_ros(
        "bag",
        str(bags[storage]),
        "--query",
        "mug",
        "bowl",
        "--top-k",
        "3",
        "--json",
        "--voxel-size",
        "0.02",
        "--out-dir",
        str(out),
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    assert answer["input"]["frames"] == NUM_FRAMES and answer["input"]["dropped"] == {}
    assert answer["input"]["pose_source"] == "/odom"
    assert answer["queries"] == ["mug", "bowl"] and answer["model"]["random_weights"] is True
    assert 1 <= len(answer["instances"]) <= 3
    ply = read_point_file(answer["outputs"]["ply"])
    assert len(ply) == answer["input"]["map_voxels"]
    for inst in answer["instances"]:
        assert inst["label"] in ("mug", "bowl") and 0 <= inst["score"] <= 1
        idx = np.asarray(inst["point_indices"])
        assert len(idx) == inst["num_points"] > 0 and len(np.unique(idx)) == len(idx)
        pts = ply.points[idx]  # rows of the written map
        lo, hi = np.asarray(inst["box"]["min"]), np.asarray(inst["box"]["max"])
        assert (pts >= lo - 1e-4).all() and (pts <= hi + 1e-4).all()
        np.testing.assert_allclose(pts.mean(axis=0), inst["centroid"], atol=1e-4)
    # the fused map lies where the synthetic table is (world frame, z up, table top near 0.75 m)
    assert ply.points[:, 2].max() > 0.5
    with Image.open(answer["outputs"]["png"]) as png:
        assert png.size == (1280, 960)


def test_bag_command_errors_are_one_line(bags, tmp_path, capsys):
    damaged = tmp_path / "damaged.mcap"
    data = next(bags["mcap"].glob("*.mcap")).read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    # In its own process: exit code and stderr as a user sees them.
    assert_one_line_error(
        sole_ros("bag", str(damaged), "--query", "mug", *TINY),
        "sole-ros bag: error:",
        "cannot read the bag",
    )
    # The other mistakes through main() in this process (same code path, without a Python start-up each).
    from sole_ros.cli import main

    for args, fragment in (
        (["bag", str(tmp_path / "absent"), "--query", "mug"], "no such bag"),
        (
            ["bag", str(bags["sqlite3"]), "--query", "mug", "--color-topic", "/nope"],
            "no topic '/nope'",
        ),
        (["bag", str(bags["mcap"]), "--query", " "], "empty query"),
        (
            [
                "bag",
                str(bags["mcap"]),
                "--query",
                "mug",
                "--static-sensor",
                "--pose-topic",
                "/odom",
            ],
            "contradict",
        ),
    ):
        code = main(args)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and fragment in lines[0], (args, captured.err)


# --- real frames: poses through the whole tf chain, with a misleading /odom beside it ----------------

REPEATS = 2


@pytest.fixture(scope="module")
def redwood():
    return load_redwood()


def _odometry_of_camera_link(frame):
    """/odom as many robots record it: the pose of camera_link, not of the optical frame."""
    return CAMERA_LINK, world_from_camera_link(frame.world_from_camera)


def _write_redwood_bag(path, frames, **kwargs):
    static = tf_chain(frames[0].world_from_camera)[1]  # the mount is the same in every frame
    return write_tf_rgbd_bag(
        path, stream(frames, REPEATS), lambda f: tf_chain(f.world_from_camera)[0], static, **kwargs
    )


@pytest.fixture(scope="module")
def redwood_bag(redwood, tmp_path_factory):
    return _write_redwood_bag(
        tmp_path_factory.mktemp("redwood") / "redwood",
        redwood,
        odometry_of=_odometry_of_camera_link,
    )


def _replay(path, topics=None, options=None):
    from sole_ros.pipeline import PerceptionPipeline

    logs = []
    pipeline = PerceptionPipeline(node_voxel_map())  # as sole_node builds it, dense features off
    with BagReplay(path, topics, options, log=logs.append) as replay:
        summary = replay.replay(pipeline)
    return summary, len(pipeline.map), logs


def test_redwood_tf_chain_composes_to_the_camera_pose(redwood):
    for frame in redwood:
        dynamic, static = tf_chain(frame.world_from_camera)
        chain = (
            dynamic[("map", "odom")]
            @ dynamic[("odom", "base_link")]
            @ static[("base_link", CAMERA_LINK)]
            @ static[(CAMERA_LINK, OPTICAL)]
        )
        np.testing.assert_allclose(chain, frame.world_from_camera, atol=1e-9)
    assert [f.index for _, f in stream(redwood, 2)] == [0, 1, 2, 3, 4] * 2
    assert [round(s, 6) for s, _ in stream(redwood, 1, start=10.0, rate=10.0)] == [
        10.0,
        10.1,
        10.2,
        10.3,
        10.4,
    ]


def test_real_frames_take_their_poses_from_tf_over_odometry(redwood, redwood_bag):
    n = len(redwood) * REPEATS
    with BagReplay(redwood_bag, log=lambda *_: None) as replay:
        # /tf has the chain to the images' own frame; /odom is only camera_link's pose
        assert replay.topics == BagTopics(
            depth="/camera/depth/image_raw",
            color="/camera/color/image_raw",
            info="/camera/color/camera_info",
            pose="tf",
        )
        got = list(replay.frames())
    assert len(got) == n
    for frame, (stamp, truth) in zip(got, stream(redwood, REPEATS)):
        assert frame.frame_id == OPTICAL and frame.stamp == pytest.approx(stamp)
        np.testing.assert_allclose(frame.pose, truth.world_from_camera, atol=1e-9)
        np.testing.assert_array_equal(frame.color, truth.rgb)

    summary, voxels, logs = _replay(redwood_bag)
    assert summary.pose_source == "/tf"
    assert voxels == direct_voxel_count(redwood)  # the same map as the frames put in directly
    assert summary.frames == n and not summary.dropped
    everything = {"received": n, "fused": n, "dropped": {}}
    assert summary.input_counts() == {"color": everything, "depth": everything}
    assert not [line for line in logs if "warning" in line], logs
    assert f"depth: {n} received, {n} fused" in summary.describe()


def test_a_pose_topic_of_another_frame_than_the_images_is_warned_about(redwood, redwood_bag):
    direct = direct_voxel_count(redwood)
    summary, voxels, logs = _replay(redwood_bag, BagTopics(pose="/odom"))
    assert summary.pose_source == "/odom" and summary.frames == len(redwood) * REPEATS
    warnings = [line for line in logs if CAMERA_LINK in line and OPTICAL in line]
    assert len(warnings) == 1, logs
    assert "--sensor-extrinsic" in warnings[0] and "--pose-topic tf" in warnings[0]
    assert voxels != direct  # camera_link's pose taken for the optical frame's: a wrong map
    # With the optical frame's pose on camera_link the same pose topic gives the right map, unwarned.
    from redwood_support import CAMERA_LINK_FROM_OPTICAL

    summary, fixed, logs = _replay(
        redwood_bag,
        BagTopics(pose="/odom"),
        ReplayOptions(sensor_extrinsic=CAMERA_LINK_FROM_OPTICAL),
    )
    assert fixed == direct and not [line for line in logs if "warning" in line], logs
    # An extrinsic with poses from /tf cannot be meant: tf places the sensor itself.
    with pytest.raises(BagError, match="--sensor-extrinsic applies to poses from a pose topic"):
        BagReplay(redwood_bag, options=ReplayOptions(sensor_extrinsic=[0, 0, 0, 0, 0, 0]))


def test_colour_that_never_pairs_is_counted(redwood, tmp_path):
    path = _write_redwood_bag(tmp_path / "late_colour", redwood, color_offset=1.0)
    summary, voxels, logs = _replay(path)
    n = len(redwood) * REPEATS
    assert voxels == 0 and summary.frames == 0
    assert summary.dropped == collections.Counter({NO_COLOUR_PAIR: n})
    counts = summary.input_counts()
    assert counts["depth"] == {"received": n, "fused": 0, "dropped": {NO_COLOUR_PAIR: n}}
    assert counts["color"] == {"received": n, "fused": 0, "dropped": {NO_COLOUR_PAIR: n}}
    shown = [line for line in logs if NO_COLOUR_PAIR in line]
    assert len(shown) == 2 and any("--sync-tolerance" in line for line in shown), (
        logs
    )  # once per input
    # Within a tolerance that spans the offset every frame pairs again.
    summary, voxels, _ = _replay(path, options=ReplayOptions(sync_tolerance=1.01))
    assert summary.frames == n and voxels == direct_voxel_count(redwood)


def test_frames_without_a_pose_are_counted(redwood, redwood_bag):
    summary, voxels, logs = _replay(redwood_bag, options=ReplayOptions(fixed_frame="nowhere"))
    n = len(redwood) * REPEATS
    assert voxels == 0 and summary.dropped == collections.Counter({NO_POSE: n})
    assert summary.input_counts() == {
        name: {"received": n, "fused": 0, "dropped": {NO_POSE: n}} for name in ("color", "depth")
    }
    (shown,) = [
        line for line in logs if NO_POSE in line
    ]  # once, with the reason and what else to try
    assert "'nowhere' is not in the tf tree" in shown and "--pose-topic /odom" in shown, shown


def test_bag_command_reports_counters_and_tf_poses(redwood, redwood_bag, tmp_path):
    result = sole_ros(
        "bag",
        str(redwood_bag),
        "--query",
        "chair",
        "--json",
        "--voxel-size",
        "0.05",
        "--no-dense-features",
        "--out-dir",
        str(tmp_path / "out"),
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)["input"]
    n = len(redwood) * REPEATS
    assert answer["pose_source"] == "/tf" and answer["frames"] == n and answer["dropped"] == {}
    assert answer["counters"] == {
        name: {"received": n, "fused": n, "dropped": {}} for name in ("color", "depth")
    }
    assert answer["map_voxels"] == node_default_voxel_count(redwood, voxel_size=0.05)
    assert (
        f"color: {n} received, {n} fused; depth: {n} received, {n} fused" in result.stderr
    )  # the summary
    assert CAMERA_LINK not in result.stderr, result.stderr[-3000:]
