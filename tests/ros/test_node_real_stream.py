"""sole_node on a robot's path: a camera driver in another process, a real TF tree, namespaces.

The Redwood RGB-D frames (a real PrimeSense camera's, ../shared/data/redwood_rgbd) are played at
30 Hz by tests/redwood_player.py, a separate process that publishes as a driver does: 640x480
16UC1 depth, rgb8 colour and CameraInfo, with TF map->odom->base_link->camera_link->
camera_color_optical_frame (dynamic links on /tf, static ones on /tf_static). The node runs with
its default QoS (inputs.qos auto) and pose source (tf, through the package's own listener: no
tf2_ros here); only the model is the tiny random one (no pretrained weights can be had here),
which does not touch what these tests check: what is fused, counted and answered.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, SOLE_NODE, NodeProcess, call_service, shared_data, wait_until_active
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor

shared_data("redwood_rgbd")  # skips the module where the shared data is absent

from redwood_support import load_redwood, node_default_voxel_count  # noqa: E402

PLAYER = ROOT / "tests" / "redwood_player.py"
# Model and device only: every input, pose and QoS parameter keeps its default.
MODEL_ARGS = [
    "-p",
    "model.config:=tiny",
    "-p",
    "model.allow_random_weights:=true",
    "-p",
    "model.clip_model:=sole-tiny",
    "-p",
    "model.clip_pretrained:=''",
    "-p",
    "device:=cpu",
    "-p",
    "output.diagnostics_period:=0.5",
]
REPEATS = 2
SENSOR = {"depth": "/depth/image", "color": "/color/image"}


def start_node(tmp_path, name: str, *extra: str, namespace: str = "") -> NodeProcess:
    args = [str(SOLE_NODE), "--ros-args", *MODEL_ARGS, *extra]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    return NodeProcess(args, tmp_path / f"{name}.log")


def start_player(*args: str, namespace: str = "/") -> subprocess.Popen:
    """The camera driver in its own process; it plays once the node's subscriptions have matched."""
    return subprocess.Popen(
        [
            sys.executable,
            str(PLAYER),
            "--namespace",
            namespace,
            "--repeats",
            str(REPEATS),
            "--wait-subscribers",
            "240",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(player: subprocess.Popen, timeout: float = 300.0) -> str:
    out, err = player.communicate(timeout=timeout)
    assert player.returncode == 0, err[-3000:]
    return out


def play(*args: str, namespace: str = "/") -> str:
    return finish(start_player(*args, namespace=namespace))


def settle(diagnostics: "Diagnostics", name: str) -> dict[str, str]:
    """The node's status once its input counters stopped changing (everything queued is fused)."""
    last = None
    for _ in range(30):
        values = diagnostics.wait(name, lambda v: True)
        now = {
            k: v
            for k, v in values.items()
            if k.split()[-1] in ("received", "fused") or "dropped" in k
        }
        if now == last:
            return values
        last = now
    pytest.fail(f"the input counters of {name} never settled: {last}")


class Diagnostics:
    """The latest /diagnostics status of each node, by status name, kept by a background spin."""

    def __init__(self, node):
        self.node = node
        self.latest: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        node.create_subscription(DiagnosticArray, "/diagnostics", self._keep, 50)
        self._executor = SingleThreadedExecutor(context=node.context)

    def _keep(self, msg) -> None:
        with self._lock:
            for status in msg.status:
                self.latest[status.name] = {kv.key: kv.value for kv in status.values}

    def wait(self, name: str, predicate, timeout: float = 90.0) -> dict[str, str]:
        """The first fresh status (published after this call) that satisfies ``predicate``."""
        self._executor.add_node(self.node)
        try:
            start = time.monotonic()
            while time.monotonic() < start + 1.0:  # what queued up before the call is history
                self._executor.spin_once(timeout_sec=0.05)
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                self._executor.spin_once(timeout_sec=0.1)
                with self._lock:
                    values = self.latest.get(name)
                if values is not None and predicate(values):
                    return values
        finally:
            self._executor.remove_node(self.node)
        pytest.fail(
            f"/diagnostics of {name} never satisfied the test within {timeout} s: {self.latest.get(name)}"
        )


def warnings(node: NodeProcess) -> str:
    return "\n".join(
        line for line in node.output().splitlines() if "[WARN]" in line or "[ERROR]" in line
    )


def counts(values: dict[str, str], name: str) -> tuple[int, int, dict[str, int]]:
    dropped = {
        k.split(": ", 1)[1]: int(v) for k, v in values.items() if k.startswith(f"{name} dropped: ")
    }
    return int(values.get(f"{name} received", 0)), int(values.get(f"{name} fused", 0)), dropped


@pytest.fixture(scope="module")
def frames():
    return load_redwood()


@pytest.fixture(scope="module")
def expected_voxels(frames):
    return node_default_voxel_count(frames)


def test_reliable_driver_stream_fuses_every_frame_with_default_parameters(
    tmp_path, ros_client, expected_voxels
):
    # The driver first, as on a robot: the node finds its publishers and subscribes to match.
    player = start_player("--reliability", "reliable")
    node = start_node(tmp_path, "sole")
    try:
        wait_until_active(ros_client, node)
        diagnostics = Diagnostics(ros_client)
        finish(player)
        values = settle(diagnostics, "/sole: perception")
        print(
            "reliable:",
            {
                k: v
                for k, v in values.items()
                if k.split()[-1] in ("received", "fused") or "dropped" in k
            },
        )
        for name in ("depth", "color"):
            received, fused, dropped = counts(values, name)
            assert dropped == {} and received == fused == 5 * REPEATS, (
                name,
                values,
                warnings(node),
            )
        assert int(values["map voxels"]) == expected_voxels, (values, node.output()[-3000:])
        assert values["qos /depth/image"] == values["qos /color/image"] == "reliable"
        assert values["poses"] in (
            "/tf through the sole_ros transform tree",
            "/tf through the tf2_ros",
        )
    finally:
        player.kill()
        node.stop()


def test_best_effort_driver_stream_loses_nothing_silently(tmp_path, ros_client, expected_voxels):
    """Large images over best-effort DDS are lost on the way (their fragments are not resent); the
    node cannot have them resent, but it subscribes best effort (a reliable subscription would not
    match at all), counts what the middleware reports lost, warns, and fuses every frame that arrives."""
    node = start_node(tmp_path, "sole")
    try:
        wait_until_active(ros_client, node)
        diagnostics = Diagnostics(ros_client)
        play("--reliability", "best_effort")
        values = settle(diagnostics, "/sole: perception")
        print(
            "best effort:",
            {
                k: v
                for k, v in values.items()
                if k.split()[-1] in ("received", "fused") or "dropped" in k
            },
        )
        assert values["qos /depth/image"] == values["qos /color/image"] == "best_effort"
        log = node.output()
        for name in ("depth", "color"):
            received, fused, dropped = counts(values, name)
            lost = dropped.pop("lost in transport", 0)
            assert received <= 5 * REPEATS and received + lost > 0, values
            waiting = int(values[f"{name} waiting for its pair"]) + int(
                values["frames waiting to be fused"]
            )
            assert fused + sum(dropped.values()) + waiting == received, (
                values
            )  # every arrival accounted for
            if lost:
                assert f"{SENSOR[name]} message(s) lost in transport" in log, log[-3000:]
        voxels = int(values["map voxels"])
        assert voxels <= expected_voxels and (voxels > 0) == (counts(values, "depth")[1] > 0), (
            values
        )
        assert node.alive()
    finally:
        node.stop()


def test_missing_inputs_are_counted_warned_once_and_leave_the_map_empty(tmp_path, ros_client):
    node = start_node(tmp_path, "sole")
    try:
        wait_until_active(ros_client, node)
        diagnostics = Diagnostics(ros_client)
        name = "/sole: perception"
        play("--no-camera-info")
        diagnostics.wait(name, lambda v: counts(v, "depth")[2].get("no camera info", 0) > 0)
        play("--no-tf")  # camera info now comes, transforms never do
        diagnostics.wait(name, lambda v: counts(v, "depth")[2].get("no pose at the stamp", 0) > 0)
        play("--color-offset", "1.0")  # colour one second off: it never pairs
        diagnostics.wait(name, lambda v: counts(v, "depth")[2].get("no colour pair", 0) > 0)
        play("--start", "1.0")  # stamped one second after 1970: a driver without a clock
        values = settle(diagnostics, name)
        assert int(values["map voxels"]) == 0, values
        received, fused, dropped = counts(values, "depth")
        dropped.pop("lost in transport", None)  # the middleware's business, not tested here
        reasons = {"no camera info", "no pose at the stamp", "no colour pair", "implausible stamp"}
        assert fused == 0 and set(dropped) == reasons, values
        log = node.output()
        for reason in reasons:
            warnings = [
                line
                for line in log.splitlines()
                if f"/depth/image message dropped, {reason}" in line
            ]
            assert len(warnings) == 1, (reason, warnings)
        assert node.alive()
    finally:
        node.stop()


def test_query_after_reset_and_new_frames_answers_from_the_new_data(tmp_path, ros_client):
    from std_srvs.srv import Trigger

    from sole_ros.ros.transforms import stamp_to_seconds
    from sole_ros.srv import QueryObjects

    # Periodic segmentation off: only the query's own freshness rule can segment the new data.
    node = start_node(tmp_path, "sole", "-p", "segmentation.period:=0.0")
    try:
        wait_until_active(ros_client, node)
        diagnostics = Diagnostics(ros_client)
        name = "/sole: perception"
        first_start = time.time()
        play("--start", f"{first_start:.3f}")
        values = settle(diagnostics, name)
        assert int(values["map voxels"]) > 0, values
        request = QueryObjects.Request(phrases=["chair"], max_results=5)
        answer = call_service(ros_client, QueryObjects, "/sole/query", request, timeout=300)
        assert answer.success, answer.message
        # The answer says which data it reflects: the newest fused frame's stamp.
        assert abs(stamp_to_seconds(answer.header.stamp) - float(values["map stamp"])) < 1e-3, (
            values
        )

        assert call_service(ros_client, Trigger, "/sole/reset", Trigger.Request()).success
        second_start = first_start + 60.0
        play("--start", f"{second_start:.3f}")
        values = settle(diagnostics, name)
        assert int(values["map voxels"]) > 0, values
        answer = call_service(ros_client, QueryObjects, "/sole/query", request, timeout=300)
        assert answer.success, answer.message  # never "no scene" while the map holds data
        stamp = stamp_to_seconds(answer.header.stamp)
        assert stamp >= second_start and abs(stamp - float(values["map stamp"])) < 1e-3, (
            stamp,
            values,
        )
        assert answer.instances, "the new map's segmentation answered nothing"
    finally:
        node.stop()


def test_two_namespaced_nodes_run_side_by_side_without_crosstalk(
    tmp_path, ros_client, expected_voxels
):
    from sole_ros.srv import QueryObjects

    robots = {
        ns: start_node(tmp_path, ns.strip("/"), namespace=ns) for ns in ("/robot1", "/robot2")
    }
    try:
        for ns, process in robots.items():
            wait_until_active(ros_client, process, name=f"{ns}/sole")
        diagnostics = Diagnostics(ros_client)
        play(namespace="/robot1")  # the camera of robot1 only
        one = settle(diagnostics, "/robot1/sole: perception")
        two = diagnostics.wait("/robot2/sole: perception", lambda v: "map voxels" in v)
        assert 0 < int(one["map voxels"]) <= expected_voxels and int(two["map voxels"]) == 0, (
            one,
            two,
        )
        assert counts(one, "depth")[0] > 0
        assert counts(two, "depth")[0] == 0
        request = QueryObjects.Request(phrases=["chair"])
        assert call_service(
            ros_client, QueryObjects, "/robot1/sole/query", request, timeout=300
        ).success
        answer = call_service(ros_client, QueryObjects, "/robot2/sole/query", request, timeout=60)
        assert not answer.success and "no scene" in answer.message, answer.message
    finally:
        for process in robots.values():
            process.stop()


def test_pose_topic_of_another_frame_than_the_sensor_is_warned_about(tmp_path, ros_client, frames):
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from redwood_support import CAMERA_LINK, OPTICAL
    from sensor_msgs.msg import CameraInfo, Image

    from sole_ros.ros.transforms import seconds_to_stamp

    node = start_node(tmp_path, "sole", "-p", "pose.source:=topic", "-p", "inputs.use_color:=false")
    try:
        wait_until_active(ros_client, node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        info_pub = ros_client.create_publisher(CameraInfo, "/depth/camera_info", qos)
        odom_pub = ros_client.create_publisher(Odometry, "/pose", qos)
        depth_pub = ros_client.create_publisher(Image, "/depth/image", qos)
        time.sleep(3.0)  # discovery, and the node's QoS re-check settling on our reliable offer
        frame = frames[0]
        start = time.time()
        for i in range(3):
            stamp = seconds_to_stamp(start + i)
            info = CameraInfo(height=480, width=640)
            info.k = [float(v) for v in frame.K.reshape(-1)]
            info.header.stamp, info.header.frame_id = stamp, OPTICAL
            odom = Odometry(child_frame_id=CAMERA_LINK)  # the camera mount, not the optical frame
            odom.header.stamp, odom.header.frame_id = stamp, "map"
            odom.pose.pose.orientation.w = 1.0
            depth = Image(
                height=480, width=640, encoding="16UC1", step=1280, data=frame.depth_mm.tobytes()
            )
            depth.header.stamp, depth.header.frame_id = stamp, OPTICAL
            info_pub.publish(info)
            odom_pub.publish(odom)
            time.sleep(0.2)
            depth_pub.publish(depth)
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "the pose topic tracks" not in node.output():
            time.sleep(0.5)
        lines = [line for line in node.output().splitlines() if "the pose topic tracks" in line]
        assert len(lines) == 1, node.output()[-3000:]
        assert (
            f"'{CAMERA_LINK}'" in lines[0]
            and f"'{OPTICAL}'" in lines[0]
            and "pose.sensor_extrinsic" in lines[0]
        )
    finally:
        node.stop()
