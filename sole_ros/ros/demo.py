"""The demo: the whole product over ROS 2 in one command (run through scripts/demo.sh).

1. starts ``sole_node`` (its own process) with the demo weights shipped in sole_ros/weights;
2. a sensor player publishes a synthetic RGB-D sequence with poses, as a robot's camera would;
3. a client waits for the scene, asks ``/sole/query`` "find the mug" and two other queries, and
   prints each answer (label, score, centroid, number of points);
4. writes a PNG of the scene with every found instance highlighted and labelled.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from scipy.spatial import cKDTree
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from sole_ros.messages import read_points
from sole_ros.ros.sensor_player import SensorPlayer, render_demo_frames
from sole_ros.srv import QueryObjects
from sole_ros.synthetic import CLASS_NAMES
from sole_ros.synthetic.catalogue import OBJECT_SIZES

DEFAULT_QUERIES = ["find the mug", "a bowl", "the bottle"]
DEMO_CLASSES = ["mug", "bowl", "bottle", "box", "can"]
DEMO_SCENE_SEED = 11


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def node_command(
    weights: str | None, device: str, contrast_phrases: str = "", views: int = 1
) -> list[str]:
    exe = (
        Path(os.environ.get("COLCON_PREFIX_PATH", "install").split(os.pathsep)[0])
        / "sole_ros/lib/sole_ros/sole_node"
    )
    args = [
        str(exe),
        "--ros-args",
        "-p",
        f"device:={device}",
        "-p",
        "pose.source:=topic",
        "-p",
        "inputs.qos:=reliable",
        "-p",
        "segmentation.period:=0.0",
        "-p",
        "scene.keyframe_translation:=0.0",
        "-p",
        "scene.keyframe_rotation_deg:=0.0",
    ]
    if contrast_phrases:
        args += ["-p", f"query.contrast_phrases:={contrast_phrases}"]
    if views != 1:
        args += ["-p", f"model.test_time_views:={views}"]
    if weights:
        args += ["-p", f"model.checkpoint:={weights}"]
    else:
        # No trained weights available: the pipeline still runs, the answers mean nothing.
        args += [
            "-p",
            "model.config:=tiny",
            "-p",
            "model.allow_random_weights:=true",
            "-p",
            "model.clip_model:=sole-tiny",
            "-p",
            "model.clip_pretrained:=''",
        ]
    return args


class DemoClient:
    def __init__(self):
        self.node = rclpy.create_node("sole_demo_client")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.scene: PointCloud2 | None = None
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.node.create_subscription(PointCloud2, "/sole/scene", self._keep_scene, latched)

    def _keep_scene(self, msg):
        self.scene = msg

    def call(self, srv_type, name: str, request, timeout: float):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"{name} did not appear within {timeout:.0f} s")
            future = client.call_async(request)
            self.executor.spin_until_future_complete(future, timeout_sec=timeout)
            if not future.done():
                raise TimeoutError(f"{name} did not answer within {timeout:.0f} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)


def _as_scene_instances(answer, scene_xyz: np.ndarray):
    """Instances from the answer with point indices into the published scene cloud."""
    tree = cKDTree(scene_xyz)
    out = []
    for inst in answer.instances:
        xyz, _ = read_points(inst.points)
        _, idx = tree.query(xyz, k=1)
        out.append(
            argparse.Namespace(
                point_indices=np.unique(idx),
                label=inst.label,
                score=inst.score,
                num_points=inst.num_points,
                centroid=np.array([inst.centroid.x, inst.centroid.y, inst.centroid.z]),
                bbox_center=np.array([inst.bbox_center.x, inst.bbox_center.y, inst.bbox_center.z]),
                bbox_size=np.array([inst.bbox_size.x, inst.bbox_size.y, inst.bbox_size.z]),
            )
        )
    return out


def demo_scene(args):
    """The demo's tabletop (seed, frames and object sizes from the command line) -> (scene, frames)."""
    return render_demo_frames(
        args.seed,
        args.frames,
        kind="tabletop",
        classes=DEMO_CLASSES,
        object_sizes=args.object_sizes,
    )


def run(args) -> int:
    start = time.monotonic()
    weights = _demo_weights(args.checkpoint)
    frames = _render_frames(args)

    say("starting sole_node")
    log_path = Path(args.out_dir) / "sole_node.log"
    node_proc, log = _start_node(weights, args, log_path)
    rclpy.init()
    client = DemoClient()
    player = SensorPlayer(frames, name="sole_demo_camera")
    client.executor.add_node(player)
    try:
        if not player.wait_for_subscribers(timeout=180):
            say(f"sole_node did not subscribe within 180 s; its log: {log_path}")
            return 1
        say(f"sole_node is up ({time.monotonic() - start:.0f} s); publishing {len(frames)} frames")
        _publish_frames(client, player, len(frames), args.rate)
        if not _segment(client, log_path):
            return 1
        found = _ask_queries(client, args.queries, args.max_results)
        if found is None:
            return 1
        if not _wait_for_scene(client, timeout=30):
            say("no /sole/scene message arrived for the picture")
            return 1
        png = _draw_answers(client.scene, found, args.queries, Path(args.out_dir) / "demo.png")
        say(f"picture of the answers (best instance per query): {png}")
        say(f"done in {time.monotonic() - start:.0f} s")
        return 0
    finally:
        client.executor.shutdown()
        player.destroy_node()
        client.node.destroy_node()
        rclpy.try_shutdown()
        stop_node_process(node_proc)
        log.close()


def _demo_weights(checkpoint: str | None) -> str | None:
    """The checkpoint to run (the given one, else the shipped demo weights), announced."""
    from sole_ros.pipeline import find_default_checkpoint

    weights = checkpoint or find_default_checkpoint()
    if weights:
        say(f"weights: {weights}")
    else:
        say(
            "WARNING: no demo weights in sole_ros/weights: running with RANDOM weights, answers are meaningless"
        )
    return weights


def _render_frames(args) -> list:
    """The demo's camera frames, the scene's objects announced."""
    say(
        f"rendering a synthetic RGB-D sequence (scene seed {args.seed}, {args.frames} frames, "
        f"{args.object_sizes} object sizes)"
    )
    scene, frames = demo_scene(args)
    say(
        "objects in the scene: "
        + ", ".join(o.class_name for o in scene.objects if o.class_name != "table")
    )
    return frames


def _start_node(weights: str | None, args, log_path: Path) -> tuple[subprocess.Popen, IO[bytes]]:
    """sole_node in its own process group (so it can be stopped whole), logging to ``log_path``;
    returns the process and the open log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    node_proc = subprocess.Popen(
        node_command(weights, args.device, args.contrast_phrases, args.views),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return node_proc, log


def _publish_frames(client: DemoClient, player: SensorPlayer, count: int, rate: float) -> None:
    """Every frame at ``rate`` per second, then a second for the node to take in the last."""
    for i in range(count):
        player.publish_frame(i)
        client.spin(1.0 / rate)
        print(f"\r[demo] published frame {i + 1}/{count}", end="", flush=True)
    print(flush=True)
    client.spin(1.0)


def _segment(client: DemoClient, log_path: Path) -> bool:
    """Ask the node to segment its scene; False (said why) when it could not."""
    say("segmenting the scene")
    segmented = client.call(Trigger, "/sole/segment", Trigger.Request(), timeout=600)
    if not segmented.success:
        say(f"segmentation failed: {segmented.message} (log: {log_path})")
        return False
    say(segmented.message)
    return True


def _ask_queries(client: DemoClient, queries: list[str], max_results: int) -> list | None:
    """Each phrase's answer, printed; None (said why) when a query failed."""
    found = []
    for phrase in queries:
        answer = client.call(
            QueryObjects,
            "/sole/query",
            QueryObjects.Request(phrases=[phrase], max_results=max_results, include_points=True),
            timeout=300,
        )
        if not answer.success:
            say(f"{phrase!r}: failed: {answer.message}")
            return None
        _print_answer(phrase, answer)
        found.append(answer)
    return found


def _print_answer(phrase: str, answer) -> None:
    say(f"{phrase!r}: {len(answer.instances)} instance(s) in frame '{answer.header.frame_id}'")
    for inst in answer.instances:
        c = inst.centroid
        print(
            f"    {inst.label:<16} score {inst.score:.3f}  centroid ({c.x:+.2f}, {c.y:+.2f}, {c.z:+.2f}) m"
            f"  {inst.num_points} points",
            flush=True,
        )


def _wait_for_scene(client: DemoClient, timeout: float) -> bool:
    """Spin until the latched /sole/scene cloud has arrived; False if not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while client.scene is None and time.monotonic() < deadline:
        client.spin(0.2)
    return client.scene is not None


def _draw_answers(scene: PointCloud2, found: list, queries: list[str], path: Path):
    """The scene cloud with each query's best instance highlighted, written as a PNG."""
    from sole_ros.visualize import render_instances_png

    scene_xyz, scene_rgb = read_points(scene)
    instances = [inst for answer in found for inst in _as_scene_instances(answer, scene_xyz)[:1]]
    # The scene is in the map frame, z up by ROS convention (REP 103): no need to guess "up".
    return render_instances_png(
        scene_xyz,
        scene_rgb,
        instances,
        path,
        title="sole_ros demo: " + ", ".join(queries),
        up=(0.0, 0.0, 1.0),
    )


def stop_node_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Ctrl-C to the node's process group (it shuts down cleanly), then SIGKILL after ``timeout``."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="sole_ros demo: node, camera, queries and a picture."
    )
    parser.add_argument(
        "--queries", nargs="+", default=DEFAULT_QUERIES, help="phrases to ask, one query each"
    )
    parser.add_argument("--seed", type=int, default=DEMO_SCENE_SEED, help="synthetic scene seed")
    parser.add_argument("--frames", type=int, default=16, help="frames to publish")
    parser.add_argument("--rate", type=float, default=4.0, help="frames per second")
    parser.add_argument("--max-results", type=int, default=3, help="instances per query")
    parser.add_argument(
        "--contrast-phrases",
        default=", ".join(CLASS_NAMES),
        help="the node's query.contrast_phrases: the things the robot knows, which a query "
        "must beat (default: the demo weights' nine classes; '' for SOLE's binary query)",
    )
    parser.add_argument(
        "--views",
        type=int,
        default=16,
        help="the node's model.test_time_views: segment N turned, scaled views of the scene and keep "
        "what they agree on, for N times the model's time (default: %(default)s: the demo weights "
        "answer best with it; 1: SOLE's single pass)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="SOLE checkpoint (default: the demo weights)"
    )
    parser.add_argument(
        "--object-sizes",
        choices=tuple(OBJECT_SIZES),
        default="compact",
        help="the small objects' size ranges (default compact, what the demo weights were trained "
        "on; household: real products' sizes, for weights trained with OBJECT_SIZES=household)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument(
        "--out-dir", default="out/demo", help="where the picture and the node's log go"
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rate <= 0:
        parser.error("--frames must be >= 1 and --rate > 0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
