"""sole_node in its own process, driven over real DDS by this test process.

The model runs with the tiny configuration and random weights (no pretrained weights exist here),
so the tests check the plumbing and the contracts (frames, stamps, fields, counts, robustness),
not what the random model recognises.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import rclpy
from conftest import SOLE_NODE, TINY_NODE_ARGS, NodeProcess, call_service, wait_until_active
from diagnostic_msgs.msg import DiagnosticArray
from fuzzing import fuzz_settings
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from sole_ros.ros.pointcloud import read_points
from sole_ros.ros.sensor_player import SensorPlayer, render_demo_frames
from sole_ros.ros.transforms import stamp_to_seconds


class Client:
    """The test's ROS side: a node in its own context, spun on a background thread."""

    def __init__(self):
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("sole_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.lock = threading.Lock()
        self.latest: dict[str, object] = {}
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        for topic, kind in (
            ("/sole/instances", PointCloud2),
            ("/sole/markers", MarkerArray),
            ("/sole/scene", PointCloud2),
        ):
            self.node.create_subscription(kind, topic, self._keeper(topic), latched)
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self._keeper("/diagnostics"), 10
        )

    def _keeper(self, topic):
        def keep(msg):
            with self.lock:
                self.latest[topic] = msg

        return keep

    def spin_for(self, seconds: float):
        self.executor.add_node(self.node)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                self.executor.spin_once(timeout_sec=0.05)
        finally:
            self.executor.remove_node(self.node)

    def wait_for(self, topic, predicate=lambda m: True, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.spin_for(0.1)
            with self.lock:
                msg = self.latest.get(topic)
            if msg is not None and predicate(msg):
                return msg
        pytest.fail(f"nothing suitable on {topic} within {timeout} s")

    def diagnostics(self) -> dict:
        msg = self.wait_for("/diagnostics", timeout=20)
        return {kv.key: kv.value for kv in msg.status[0].values}

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("scenes")


@pytest.fixture(scope="module")
def node(tmp_path_factory, scene_dir):
    proc = NodeProcess(
        [str(SOLE_NODE), *TINY_NODE_ARGS, "-p", f"scene.directory:={scene_dir}"],
        tmp_path_factory.mktemp("node") / "sole_node.log",
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(node):
    c = Client()
    wait_until_active(c.node, node)
    yield c
    c.close()


@pytest.fixture(scope="module")
def fed_scene(node, client):
    """Publish a synthetic RGB-D sequence with poses and segment it; returns the newest stamp."""
    _, frames = render_demo_frames(seed=5, num_frames=6, width=160, height=120)
    player = SensorPlayer(frames, name="sole_test_player", context=client.context)
    assert player.wait_for_subscribers(timeout=60), node.output()
    newest = 0.0
    for i in range(len(frames)):
        newest = player.publish_frame(i)
        time.sleep(0.3)  # let the node ingest: reliable QoS, but the node takes its time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if abs(float(client.diagnostics().get("map stamp", "0")) - newest) < 1e-3:
            break  # the newest frame is in the map
        time.sleep(0.5)
    from std_srvs.srv import Trigger

    answer = call_service(client.node, Trigger, "/sole/segment", Trigger.Request(), timeout=300)
    assert answer.success, (answer.message, node.output()[-3000:])
    player.destroy_node()
    return newest


def test_node_is_active_and_reports_no_scene_first(node, client):
    from sole_ros.srv import QueryObjects

    answer = call_service(
        client.node, QueryObjects, "/sole/query", QueryObjects.Request(phrases=["mug"])
    )
    assert not answer.success
    assert "no scene yet" in answer.message, answer.message
    assert node.alive(), node.output()


def test_query_answers_with_instances_cloud_and_markers(node, client, fed_scene):
    from sole_ros.srv import QueryObjects

    request = QueryObjects.Request(
        phrases=["mug", "a red bowl"], max_results=5, min_score=0.0, include_points=True
    )
    answer = call_service(client.node, QueryObjects, "/sole/query", request, timeout=120)
    assert answer.success, answer.message
    assert answer.header.frame_id == "map"
    assert abs(stamp_to_seconds(answer.header.stamp) - fed_scene) < 1e-3
    assert 0 < len(answer.instances) <= 5
    for inst in answer.instances:
        assert inst.label in ("mug", "a red bowl")
        assert 0.0 <= inst.score <= 1.0
        xyz, rgb = read_points(inst.points)
        assert xyz.shape[0] == inst.num_points > 0
        lo, hi = xyz.min(0), xyz.max(0)
        center = np.array([inst.bbox_center.x, inst.bbox_center.y, inst.bbox_center.z])
        size = np.array([inst.bbox_size.x, inst.bbox_size.y, inst.bbox_size.z])
        np.testing.assert_allclose(center, (lo + hi) / 2, atol=1e-4)
        np.testing.assert_allclose(size, hi - lo, atol=1e-4)
        np.testing.assert_allclose(
            [inst.centroid.x, inst.centroid.y, inst.centroid.z], xyz.mean(0), atol=1e-3
        )
    scores = [i.score for i in answer.instances]
    assert scores == sorted(scores, reverse=True)

    # The same answer is published for RViz: labelled cloud and markers, latched.
    total = sum(i.num_points for i in answer.instances)
    cloud = client.wait_for("/sole/instances", lambda m: m.width * m.height == total)
    assert cloud.header.frame_id == "map"
    assert abs(stamp_to_seconds(cloud.header.stamp) - fed_scene) < 1e-3
    names = {f.name: f.datatype for f in cloud.fields}
    assert names == {
        "x": PointField.FLOAT32,
        "y": PointField.FLOAT32,
        "z": PointField.FLOAT32,
        "rgb": PointField.FLOAT32,
        "instance_id": PointField.UINT32,
        "score": PointField.FLOAT32,
    }
    markers = client.wait_for(
        "/sole/markers", lambda m: len(m.markers) == 1 + 2 * len(answer.instances)
    )
    assert markers.markers[0].action == Marker.DELETEALL
    texts = [m.text for m in markers.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert all(any(label in t for label in ("mug", "a red bowl")) for t in texts)

    scene = client.wait_for("/sole/scene", lambda m: m.width > 0)
    assert scene.header.frame_id == "map"


def test_several_clients_query_at_once(node, client, fed_scene):
    from sole_ros.srv import QueryObjects

    clients = [client.node.create_client(QueryObjects, "/sole/query") for _ in range(4)]
    for c in clients:
        assert c.wait_for_service(timeout_sec=30)
    futures = [
        c.call_async(QueryObjects.Request(phrases=[f"object {i}"], max_results=3))
        for i, c in enumerate(clients)
    ]
    end = time.monotonic() + 120
    while not all(f.done() for f in futures) and time.monotonic() < end:
        client.spin_for(0.1)
    assert all(f.done() for f in futures), "not every concurrent query was answered"
    assert all(f.result().success for f in futures), [f.result().message for f in futures]
    for c in clients:
        client.node.destroy_client(c)


@pytest.mark.parametrize(
    "phrases, reason",
    [
        ([], "empty query"),
        (["   "], "empty query"),
        (["x" * 300], "too long"),
        (["a"] * 17, "too many"),
    ],
)
def test_bad_queries_get_a_reason(node, client, phrases, reason):
    from sole_ros.srv import QueryObjects

    answer = call_service(
        client.node, QueryObjects, "/sole/query", QueryObjects.Request(phrases=phrases)
    )
    assert not answer.success and reason in answer.message, answer.message


def _cloud_strategy():
    field = st.builds(
        PointField,
        name=st.sampled_from(["x", "y", "z", "rgb", "rgba", "i"]),
        offset=st.integers(0, 40),
        datatype=st.integers(0, 10),
        count=st.integers(0, 3),
    )
    return st.builds(
        PointCloud2,
        height=st.integers(0, 4),
        width=st.integers(0, 8),
        fields=st.lists(field, max_size=6),
        is_bigendian=st.booleans(),
        point_step=st.integers(0, 48),
        row_step=st.integers(0, 400),
        data=st.binary(max_size=400),
        is_dense=st.booleans(),
    )


def _image_strategy():
    return st.builds(
        Image,
        height=st.integers(0, 6),
        width=st.integers(0, 6),
        encoding=st.sampled_from(["16UC1", "32FC1", "rgb8", "bgr8", "rgba8", "mono8", "jpeg", ""]),
        is_bigendian=st.integers(0, 1),
        step=st.integers(0, 40),
        data=st.binary(max_size=200),
    )


def test_fuzzed_inputs_leave_node_alive_and_scene_unchanged(node, client, fed_scene):
    before = client.diagnostics()
    pub_ctx = dict(qos_profile=10)
    pubs = {
        "points": client.node.create_publisher(PointCloud2, "/points", **pub_ctx),
        "depth": client.node.create_publisher(Image, "/depth/image", **pub_ctx),
        "color": client.node.create_publisher(Image, "/color/image", **pub_ctx),
        "info": client.node.create_publisher(CameraInfo, "/depth/camera_info", **pub_ctx),
        "pose": client.node.create_publisher(Odometry, "/pose", **pub_ctx),
    }

    @fuzz_settings(40, suppress_health_check=list(HealthCheck))
    @given(
        cloud=_cloud_strategy(),
        depth=_image_strategy(),
        color=_image_strategy(),
        k=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=9, max_size=9),
        pose=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=7, max_size=7),
    )
    def publish_garbage(cloud, depth, color, k, pose):
        for msg in (cloud, depth, color):
            msg.header.frame_id = "camera"
        pubs["points"].publish(cloud)
        pubs["depth"].publish(depth)
        pubs["color"].publish(color)
        info = CameraInfo(width=depth.width, height=depth.height)
        info.k = k
        pubs["info"].publish(info)
        odom = Odometry()
        p, q = odom.pose.pose.position, odom.pose.pose.orientation
        p.x, p.y, p.z, q.x, q.y, q.z, q.w = pose
        pubs["pose"].publish(odom)

    publish_garbage()
    client.spin_for(2.0)
    assert node.alive(), node.output()[-3000:]
    after = client.diagnostics()
    assert after["map version"] == before["map version"], (before, after)
    assert after["map voxels"] == before["map voxels"]
    for pub in pubs.values():
        client.node.destroy_publisher(pub)


def test_implausible_stamps_are_dropped_and_counted(node, client, fed_scene):
    """Clouds stamped zero and 10 years ahead (with a pose at that very stamp) never reach the
    map: counted as implausible stamps, the map's version and stamp stay where they were."""
    from sole_ros.ros.pointcloud import make_cloud
    from sole_ros.ros.sensor_player import odometry
    from sole_ros.ros.transforms import seconds_to_stamp

    before = client.diagnostics()
    dropped_before = int(before.get("points dropped: implausible stamp", 0))
    points_pub = client.node.create_publisher(PointCloud2, "/points", 10)
    pose_pub = client.node.create_publisher(Odometry, "/pose", 10)
    xyz = np.random.default_rng(0).uniform(-0.5, 0.5, (500, 3)).astype(np.float32) + [0, 0, 1.0]
    try:
        time.sleep(1.0)  # discovery of the new publishers
        for stamp in (0.0, time.time() + 10 * 365.25 * 86400):  # ROS stamps end in 2038
            header = Header(frame_id="camera", stamp=seconds_to_stamp(stamp))
            pose_pub.publish(
                odometry(Header(frame_id="map", stamp=header.stamp), "camera", np.eye(4))
            )
            points_pub.publish(make_cloud(header, xyz))
        after = client.wait_for(
            "/diagnostics",
            lambda m: (
                int(
                    {kv.key: kv.value for kv in m.status[0].values}.get(
                        "points dropped: implausible stamp", 0
                    )
                )
                >= dropped_before + 2
            ),
        )
        values = {kv.key: kv.value for kv in after.status[0].values}
        assert (
            values["map version"] == before["map version"]
            and values["map stamp"] == before["map stamp"]
        )
    finally:
        client.node.destroy_publisher(points_pub)
        client.node.destroy_publisher(pose_pub)


def test_declared_parameters_match_config(node, client):
    from rcl_interfaces.srv import ListParameters

    from sole_ros.ros.parameters import PARAMETERS

    answer = call_service(
        client.node, ListParameters, "/sole/list_parameters", ListParameters.Request()
    )
    declared = set(answer.result.names) - {"use_sim_time", "start_type_description_service"}
    assert declared == {p.name for p in PARAMETERS}


def test_reset_then_save_and_load(node, client, fed_scene, scene_dir):
    from std_srvs.srv import Trigger

    from sole_ros.srv import LoadScene, SaveScene

    saved = call_service(
        client.node, SaveScene, "/sole/save_scene", SaveScene.Request(path="scene.map")
    )
    assert saved.success, saved.message
    assert (scene_dir / "scene.map").is_file() and str(scene_dir) in saved.message
    bad = call_service(client.node, LoadScene, "/sole/load_scene", LoadScene.Request(path="nope"))
    assert (
        not bad.success and "could not load" in bad.message and "no such scene file" in bad.message
    )
    voxels = client.diagnostics()["map voxels"]
    reset = call_service(client.node, Trigger, "/sole/reset", Trigger.Request())
    assert reset.success
    assert client.wait_for(
        "/diagnostics",
        lambda m: {kv.key: kv.value for kv in m.status[0].values}.get("map voxels") == "0",
    )
    loaded = call_service(
        client.node, LoadScene, "/sole/load_scene", LoadScene.Request(path="scene.map")
    )
    assert loaded.success, loaded.message
    assert client.wait_for(
        "/diagnostics",
        lambda m: {kv.key: kv.value for kv in m.status[0].values}.get("map voxels") == voxels,
    )
    assert node.alive()


def test_scene_services_stay_inside_their_folder(node, client, fed_scene, scene_dir, tmp_path):
    """Saves that leave scene.directory, replace a foreign file or write to a special file are
    refused with the reason, and nothing outside the folder is written."""
    import stat

    from sole_ros.srv import SaveScene

    def save(name):
        return call_service(
            client.node, SaveScene, "/sole/save_scene", SaveScene.Request(path=name)
        )

    outside = tmp_path / "outside.map"
    depth = "../" * (len(scene_dir.parts) + 2)
    for name in (str(outside), f"{depth}{str(outside).lstrip('/')}", "../escaped.map"):
        answer = save(name)
        assert not answer.success and "outside the scene folder" in answer.message, answer.message
    assert not outside.exists() and not (scene_dir.parent / "escaped.map").exists()
    (scene_dir / "notes.txt").write_text("keep me")
    answer = save("notes.txt")
    assert not answer.success and "refusing to replace it" in answer.message
    assert (scene_dir / "notes.txt").read_text() == "keep me"
    os.mkfifo(
        scene_dir / "special"
    )  # the stand-in for /dev/null: a special file that must stay one
    answer = save("special")
    assert not answer.success and "not a regular file" in answer.message
    assert stat.S_ISFIFO(os.lstat(scene_dir / "special").st_mode)
    answer = save("floor2/kitchen.map")  # a relative path inside the folder is fine
    assert answer.success and (scene_dir / "floor2" / "kitchen.map").is_file(), answer.message
    assert node.alive()


def test_hostile_scene_files_are_refused_and_change_nothing(node, client, fed_scene, scene_dir):
    """Loads of special files, huge files and crafted headers are refused with their reason,
    quickly, while the node keeps answering; the map keeps its content."""
    import shutil

    from map_file_support import duplicate_a_key, rewrite_header, rewrite_header_text
    from std_srvs.srv import Trigger

    from sole_ros.srv import LoadScene, SaveScene

    assert call_service(
        client.node, SaveScene, "/sole/save_scene", SaveScene.Request(path="good.map")
    ).success
    before = client.diagnostics()
    (scene_dir / "zero.map").symlink_to("/dev/zero")
    os.mkfifo(scene_dir / "pipe.map")
    with open(scene_dir / "huge.map", "wb") as handle:  # 100 GB, sparse
        handle.write(b"SOLEMAP\n")
        handle.truncate(100 * 1024**3)
    crafted = {
        "infinite.map": lambda p: rewrite_header_text(
            p, lambda t: t.replace('"version": ', '"version": Infinity, "x": ', 1)
        ),
        "deep.map": lambda p: rewrite_header_text(
            p, lambda t: t[:-1] + ', "d": ' + "[" * 100_000 + "]" * 100_000 + "}"
        ),
        "version.map": lambda p: rewrite_header(p, lambda h: h.update(version=10**400)),
        "duplicates.map": duplicate_a_key,
    }
    for name, damage in crafted.items():
        shutil.copy(scene_dir / "good.map", scene_dir / name)
        damage(scene_dir / name)
    expected = {
        "zero.map": "outside the scene folder",
        "pipe.map": "not a regular file",
        "huge.map": "more than the",
        "infinite.map": "numbers must be finite",
        "deep.map": "nests deeper",
        "version.map": "map version must be an integer",
        "duplicates.map": "not strictly increasing",
        "/dev/zero": "outside the scene folder",
    }
    for name, reason in expected.items():
        start = time.monotonic()
        answer = call_service(
            client.node, LoadScene, "/sole/load_scene", LoadScene.Request(path=name), timeout=30
        )
        assert not answer.success and reason in answer.message, (name, answer.message)
        assert time.monotonic() - start < 10, name
    # the node still serves everything else, and the map is the one it had
    segment = call_service(client.node, Trigger, "/sole/segment", Trigger.Request(), timeout=120)
    assert segment.success, segment.message
    after = client.diagnostics()
    assert after["map voxels"] == before["map voxels"], (before, after)
    assert node.alive(), node.output()[-3000:]


def test_lifecycle_deactivate_and_activate_again(node, client, fed_scene):
    """Last in this module: deactivating stops answering with the reason; activating resumes."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from sole_ros.srv import QueryObjects

    def change(transition_id):
        answer = call_service(
            client.node,
            ChangeState,
            "/sole/change_state",
            ChangeState.Request(transition=Transition(id=transition_id)),
        )
        assert answer.success

    change(Transition.TRANSITION_DEACTIVATE)
    answer = call_service(
        client.node, QueryObjects, "/sole/query", QueryObjects.Request(phrases=["mug"])
    )
    assert not answer.success and "not active" in answer.message, answer.message
    change(Transition.TRANSITION_ACTIVATE)
    from std_srvs.srv import Trigger

    segmented = call_service(client.node, Trigger, "/sole/segment", Trigger.Request(), timeout=300)
    assert segmented.success, segmented.message
    answer = call_service(
        client.node, QueryObjects, "/sole/query", QueryObjects.Request(phrases=["mug"])
    )
    assert answer.success, answer.message
    assert node.alive()


def test_missing_weights_are_reported_not_crashed(spawn, ros_client):
    """A node that cannot load its model stays up and says why, in answers and in /diagnostics."""
    from sole_ros.srv import QueryObjects

    args = [
        a
        if not a.startswith("model.allow_random_weights")
        else "model.checkpoint:=/nonexistent/sole.ckpt"
        for a in TINY_NODE_ARGS
    ]
    proc = spawn(str(SOLE_NODE), *args, "-r", "__ns:=/broken")  # beside this module's /sole
    deadline = time.monotonic() + 120
    answer = None
    while time.monotonic() < deadline:
        answer = call_service(
            ros_client, QueryObjects, "/broken/sole/query", QueryObjects.Request(phrases=["mug"])
        )
        if "model not loaded" in answer.message:
            break
        time.sleep(0.5)
    assert answer is not None and not answer.success and "model not loaded" in answer.message, (
        answer.message
    )
    assert "/nonexistent/sole.ckpt" in answer.message
    assert proc.alive(), proc.output()[-3000:]


def test_sensor_player_renders_the_object_sizes_asked():
    """`sensor_player --object-sizes household` publishes a scene of real products' sizes (the
    size ranges a household-trained checkpoint knows); the default stays the demo's compact scene."""
    compact, frames = render_demo_frames(
        seed=5, num_frames=1, width=80, height=60, classes=["box", "book"]
    )
    household, _ = render_demo_frames(
        seed=5, num_frames=1, width=80, height=60, classes=["box", "book"], object_sizes="household"
    )
    assert len(frames) == 1
    assert [o.class_name for o in compact.objects] == [o.class_name for o in household.objects]

    def area(scene):  # summed top-face areas of the boxes and books
        return sum(p.size[0] * p.size[1] for o in scene.objects[1:] for p in o.primitives[:1])

    assert area(household) != area(compact)
    with pytest.raises(ValueError, match="object sizes"):
        render_demo_frames(seed=5, num_frames=1, object_sizes="giant")
