"""The object memory through a namespaced sole_node over real DDS: ~/objects shows the same ids
over successive segmentations of a map that keeps being observed, and answers carry them."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import rclpy
from conftest import SOLE_NODE, TINY_NODE_ARGS, NodeProcess, call_service, wait_until_active
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from sole_ros.ros.sensor_player import SensorPlayer, render_demo_frames
from sole_ros.srv import QueryObjects

NAMESPACE = "/robot7"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    proc = NodeProcess(
        [str(SOLE_NODE), *TINY_NODE_ARGS, "-r", f"__ns:={NAMESPACE}", "-p", "memory.enabled:=true"],
        tmp_path_factory.mktemp("node") / "sole_node.log",
    )
    yield proc
    proc.stop()


def _uint32_field(cloud: PointCloud2, name: str) -> np.ndarray:
    field = next(f for f in cloud.fields if f.name == name)
    assert field.datatype == field.UINT32 and not cloud.is_bigendian
    rows = np.frombuffer(bytes(cloud.data), dtype=np.uint8).reshape(-1, cloud.point_step)
    return rows[:, field.offset : field.offset + 4].copy().view("<u4").ravel()


def _ids_of(markers: MarkerArray) -> list[int]:
    texts = [m.text for m in markers.markers if m.type == Marker.TEXT_VIEW_FACING]
    return sorted(int(re.match(r"#(\d+)", text).group(1)) for text in texts)


def test_objects_keep_their_ids_over_three_segmentations(node):
    context = rclpy.context.Context()
    rclpy.init(context=context)
    client = rclpy.create_node("sole_objects_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    latest: dict[str, object] = {}
    lock = threading.Lock()
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )

    def keeper(topic):
        def keep(msg):
            with lock:
                latest[topic] = msg

        return keep

    client.create_subscription(MarkerArray, f"{NAMESPACE}/sole/objects", keeper("markers"), latched)
    client.create_subscription(
        PointCloud2, f"{NAMESPACE}/sole/objects/points", keeper("points"), latched
    )
    _, frames = render_demo_frames(seed=5, num_frames=4, width=160, height=120)
    player = SensorPlayer(frames, name="sole_objects_player", namespace=NAMESPACE, context=context)

    def wait_for_new(topic: str, after_stamp: float, timeout: float = 60.0):
        # the client joins this executor only while waiting: call_service spins it in its own
        executor.add_node(client)
        try:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.1)
                with lock:
                    msg = latest.get(topic)
                if msg is not None:
                    header = msg.markers[0].header if topic == "markers" else msg.header
                    if header.stamp.sec + header.stamp.nanosec * 1e-9 > after_stamp:
                        return msg
        finally:
            executor.remove_node(client)
        pytest.fail(
            f"no new {topic} on {NAMESPACE}/sole/objects within {timeout} s\n{node.output()[-3000:]}"
        )

    try:
        wait_until_active(client, node, name=f"{NAMESPACE}/sole")
        assert player.wait_for_subscribers(timeout=60), node.output()
        for i in range(len(frames)):
            player.publish_frame(i)
            time.sleep(0.3)
        seen, newest = [], 0.0
        for round_ in range(3):
            player.start = (
                time.time()
            )  # the last view again, stamped now: the map changes, its objects do not
            newest = player.publish_frame(len(frames) - 1)
            time.sleep(1.0)
            answer = call_service(
                client, Trigger, f"{NAMESPACE}/sole/segment", Trigger.Request(), timeout=300
            )
            assert answer.success, (answer.message, node.output()[-3000:])
            markers = wait_for_new("markers", after_stamp=newest - 1e-3)
            points = wait_for_new("points", after_stamp=newest - 1e-3)
            ids = _ids_of(markers)
            assert ids and sorted(
                int(v) for v in np.unique(_uint32_field(points, "object_id"))
            ) == sorted(set(ids))
            seen.append(ids)
        # The same view seen again: the objects keep their ids (a part the random model splits
        # differently may come and go); an id that appears is new, never an old one reused.
        for k in range(1, len(seen)):
            before, after, earlier = set(seen[k - 1]), set(seen[k]), set().union(*seen[:k])
            assert len(before & after) >= 0.9 * len(before), seen
            assert all(i > max(earlier) for i in after - earlier), seen
        answer = call_service(
            client, QueryObjects, f"{NAMESPACE}/sole/query", QueryObjects.Request(phrases=["mug"])
        )
        assert answer.success and answer.instances, answer.message
        assert {inst.id for inst in answer.instances} <= set(seen[0]) | {0}
        assert any(inst.id in seen[0] for inst in answer.instances)
        assert node.alive()
    finally:
        executor.shutdown()
        player.destroy_node()
        client.destroy_node()
        rclpy.shutdown(context=context)
