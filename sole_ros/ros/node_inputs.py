"""sole_node's sensor inputs: subscriptions, depth/colour pairing, poses, fusing and their counts.

While the node is active, each input (``points``, ``depth`` + ``color``, ``depth/camera_info``,
``pose``) is subscribed with the QoS its publishers offer (input_qos.py); depth and colour are
paired by the package's synchroniser (sole_ros.messages.sync, the bag replay's rule too).
Callbacks only count and queue; one worker (ingest_queue.py) builds each frame with the
package's frame builder (sole_ros.messages.frames), looks up its pose (tf or the pose topic) and
fuses it into the pipeline. Every message is counted as received, fused or dropped with its
reason (sole_ros.messages.input_counters), and an input that stalls is warned about.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from sole_ros.messages import input_counters as reasons
from sole_ros.messages.frames import COLOR, DEPTH, POINTS, cloud_frame, fuse, rgbd_frame
from sole_ros.messages.input_counters import InputCounters
from sole_ros.messages.poses import POSE_END_TOLERANCE
from sole_ros.messages.transform_tree import frame_name
from sole_ros.ros.errors import MalformedMessage
from sole_ros.ros.images import camera_matrix
from sole_ros.ros.ingest_queue import IngestQueue
from sole_ros.ros.input_qos import AdaptiveSubscriptions
from sole_ros.ros.node_diagnostics import RateMeter
from sole_ros.ros.sync import OUT_OF_ORDER, lost_events, subscribe_synchronized
from sole_ros.ros.tf_listener import (
    make_transform_listener,
    tf2_ros_available,
    tf_messages_available,
)
from sole_ros.ros.transforms import PoseBuffer, PoseLookupError, extrinsic_matrix, stamp_to_seconds

POSE_MESSAGES = {
    "odometry": Odometry,
    "pose_stamped": PoseStamped,
    "transform_stamped": TransformStamped,
}
SENSOR_TOPICS = {
    POINTS: "points",
    DEPTH: "depth/image",
    COLOR: "color/image",
    "camera_info": "depth/camera_info",
    "pose": "pose",
}
STALL_SECONDS = 5.0  # an input receiving but fusing nothing this long is warned about
STALL_WARN_PERIOD = 10.0  # ... at most this often per input
QOS_RECHECK_PERIOD = 1.0  # inputs.qos auto: how often publishers' QoS is re-checked

__all__ = ["NodeInputs", "SENSOR_TOPICS", "POSE_MESSAGES"]


class _NoCameraInfo(MalformedMessage):
    """A depth image arrived before any usable camera info."""


class NodeInputs:
    """The inputs of ``node`` (a SoleNode): ``start()`` on activate, ``stop()`` on deactivate.

    ``pipeline()`` gives the pipeline frames go into (None: nothing to fuse into). The counters
    and rates live as long as the node, so /diagnostics shows them in every state.
    """

    def __init__(self, node, pipeline: Callable[[], Any], timer_group):
        self._node = node
        self._pipeline = pipeline
        self._timer_group = timer_group
        self.counters = InputCounters()
        self.rates = {name: RateMeter() for name in (POINTS, DEPTH, COLOR, "pose")}
        self.subscriptions: AdaptiveSubscriptions | None = None
        self.sync = None
        self.ingest: IngestQueue | None = None
        self.transforms = None
        self._timers: list = []
        self._pose_buffer: PoseBuffer | None = None
        self._extrinsic = np.eye(4)
        self._pose_child_frame = (
            ""  # child_frame_id of the pose topic's messages (Odometry, TransformStamped)
        )
        self._pose_frames_warned: set[tuple[str, str]] = set()
        self._camera_info: CameraInfo | None = None
        self._camera_info_arrived = threading.Condition()
        self._last_warn: dict[str, float] = {}
        self._noted: set[str] = set()
        self._publishers_seen: dict[str, float] = {}  # input -> when its publishers were first seen
        node.create_timer(1.0, self._warn_stalled, callback_group=timer_group)

    # --- helpers --------------------------------------------------------------------------------
    def _param(self, name: str):
        return self._node.get_parameter(name).value

    def _warn_throttled(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) >= period:
            self._last_warn[key] = now
            self._node.get_logger().warning(text)

    def _note_once(self, text: str) -> None:
        if text not in self._noted:
            self._noted.add(text)
            self._node.get_logger().warning(text)

    def _drop(self, name: str, reason: str, error) -> None:
        """Count a dropped input message under its reason and warn (throttled per input and reason)."""
        dropped = self.counters.dropped(name, reason, str(error))
        self._warn_throttled(
            f"{name}/{reason}",
            f"{self._topic(name)} message dropped, {reason}: "
            f"{error} (dropped so far for this reason: {dropped})",
        )

    def _topic(self, name: str) -> str:
        """An input's full topic name (namespace and remapping applied), for messages to the user."""
        return self._node.resolve_topic_name(SENSOR_TOPICS[name])

    @staticmethod
    def problems(values: dict) -> list[str]:
        """Why the input parameters cannot work on this installation (configure refuses them)."""
        if values["pose.source"] == "tf" and not (tf2_ros_available() or tf_messages_available()):
            return [
                "pose.source=tf needs tf2_msgs (run scripts/setup.sh, which builds it) or tf2_ros; "
                "or use pose.source=topic"
            ]
        return []

    # --- activate / deactivate ------------------------------------------------------------------
    def start(self) -> None:
        node = self._node
        self.subscriptions = AdaptiveSubscriptions(
            node,
            self._param("inputs.qos"),
            self._param("inputs.queue_size"),
            log=node.get_logger().info,
        )
        self.ingest = IngestQueue(self._fuse, self._param("inputs.max_pending"), self._overflowed)
        if self._param("inputs.cloud"):
            self._subscribe_one(PointCloud2, POINTS, self._on_cloud)
        if self._param("inputs.rgbd"):
            self._subscribe_one(CameraInfo, "camera_info", self._on_info, latest_value=True)
            if self._param("inputs.use_color"):
                self.subscriptions.add(
                    [SENSOR_TOPICS[DEPTH], SENSOR_TOPICS[COLOR]], self._subscribe_rgbd
                )
            else:
                self._subscribe_one(Image, DEPTH, lambda msg: self._on_rgbd(msg, None))
        if self._param("pose.source") == "topic":
            self._pose_buffer = PoseBuffer()
            self._extrinsic = extrinsic_matrix(list(self._param("pose.sensor_extrinsic")))
            # Its own group, like every input: the ingest worker waits for poses (_sensor_pose) while
            # pose messages keep coming in.
            self._subscribe_one(
                POSE_MESSAGES[self._param("pose.topic_type")], "pose", self._on_pose
            )
        else:
            # tf2_ros, or the package's listener spinning on a participant and thread of its own.
            self.transforms = make_transform_listener(node)
            node.get_logger().info(
                f"poses from /tf and /tf_static through the {self.transforms.backend}"
            )
        self._timers.append(
            node.create_timer(
                QOS_RECHECK_PERIOD, self.subscriptions.refresh, callback_group=self._timer_group
            )
        )

    def stop(self) -> None:
        for timer in self._timers:
            self._node.destroy_timer(timer)
        self._timers = []
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None
        if self.subscriptions is not None:
            self.subscriptions.destroy()
            self.subscriptions = None
        self.sync = None
        if self.transforms is not None:
            self.transforms.destroy(self._node)
            self.transforms = None

    # --- subscriptions (re-created by AdaptiveSubscriptions when the QoS must change) -----------
    def _subscribe_one(self, msg_type, name: str, callback, latest_value: bool = False) -> None:
        def received(msg):
            self.counters.received(name)
            callback(msg)

        def create(profiles):
            # A group per input: callbacks only count and queue (the ingest worker fuses), so inputs
            # run side by side and one stream's burst never leaves another's messages untaken until
            # the DDS reader's history overwrites them; each input stays in order.
            subscription = self._node.create_subscription(
                msg_type,
                SENSOR_TOPICS[name],
                received,
                profiles[0],
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=lost_events(self._lost, name),
            )
            return lambda: self._node.destroy_subscription(subscription)

        self.subscriptions.add([SENSOR_TOPICS[name]], create, latest_value)

    def _lost(self, name: str, count: int) -> None:
        if count > 0:
            self.counters.dropped(
                name,
                reasons.LOST,
                n=count,
                detail="the middleware lost it on the way (large messages over best effort?)",
            )
            if name == "camera_info":
                return  # read best effort on purpose: the next one replaces it, nothing to warn about
            self._warn_throttled(
                f"{name}/{reasons.LOST}",
                f"{count} {self._topic(name)} message(s) lost in "
                "transport before reaching the node (large messages over best-effort DDS lose "
                "fragments: a reliable publisher, or inputs.qos, avoids it)",
            )

    def _subscribe_rgbd(self, profiles):
        names = (DEPTH, COLOR)

        def dropped(index: int, why: str) -> None:
            reason = reasons.TOO_OLD if why == OUT_OF_ORDER else reasons.NO_COLOUR_PAIR
            detail = (
                "not newer than the last pair"
                if why == OUT_OF_ORDER
                else f"no {names[1 - index]} image within inputs.sync_slop "
                f"({self._param('inputs.sync_slop'):g} s)"
            )
            self._drop(names[index], reason, detail)

        # auto: the package's synchroniser, whose rule the bag replay shares; message_filters only when asked.
        backend = self._param("inputs.sync_backend")
        node = self._node
        self.sync = subscribe_synchronized(
            node,
            [(Image, SENSOR_TOPICS[DEPTH]), (Image, SENSOR_TOPICS[COLOR])],
            self._on_rgbd,
            slop=self._param("inputs.sync_slop"),
            queue_size=self._param("inputs.queue_size"),
            qos=profiles,
            backend="builtin" if backend == "auto" else backend,
            callback_group=[MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()],
            on_receive=lambda index, msg: self.counters.received(names[index]),
            on_drop=dropped,
            on_lost=lambda index, count: self._lost(names[index], count),
        )
        sync = self.sync
        return lambda: sync.destroy(node)

    # --- poses ----------------------------------------------------------------------------------
    def _on_pose(self, msg) -> None:
        self._pose_child_frame = getattr(msg, "child_frame_id", "") or self._pose_child_frame
        try:
            self._pose_buffer.add_message(msg)
            self.rates["pose"].tick()
            self.counters.fused("pose")
        except (ValueError, MalformedMessage) as error:
            self._drop("pose", reasons.INVALID, error)

    def _check_pose_frame(self, sensor_frame: str) -> None:
        """Warn (once per pair) when the pose topic tracks another frame than the sensor's and no
        extrinsic bridges them: the map would be built from the wrong pose, silently."""
        child = self._pose_child_frame
        if not child or not sensor_frame or frame_name(child) == frame_name(sensor_frame):
            return
        if (
            not np.allclose(self._extrinsic, np.eye(4))
            or (child, sensor_frame) in self._pose_frames_warned
        ):
            return
        self._pose_frames_warned.add((child, sensor_frame))
        self._node.get_logger().warning(
            f"the pose topic tracks '{child}' but the sensor messages are in '{sensor_frame}', and "
            f"pose.sensor_extrinsic is the identity: set the extrinsic ({child} -> {sensor_frame}) or use "
            "pose.source:=tf"
        )

    def _sensor_pose(self, stamp: float, frame_id: str) -> np.ndarray:
        """World-from-sensor at ``stamp``; PoseLookupError with the reason when unknown."""
        if self._pose_buffer is not None:
            self._check_pose_frame(frame_id)
            # The pose of this stamp may still be on its way (another topic): wait up to the timeout.
            deadline = time.monotonic() + self._param("pose.timeout")
            while True:
                try:
                    world_from_base = self._pose_buffer.lookup(stamp, tolerance=POSE_END_TOLERANCE)
                    return world_from_base @ self._extrinsic
                except PoseLookupError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
        if not frame_id:
            raise PoseLookupError("message has an empty frame_id")
        fixed = self._param("fixed_frame")
        try:
            return self.transforms.lookup(fixed, frame_id, stamp, self._param("pose.timeout"))
        except PoseLookupError as error:
            raise PoseLookupError(
                f"no transform {fixed} <- {frame_id} at {stamp:.3f}: {error}"
            ) from None

    # --- sensor messages --------------------------------------------------------------------------
    def _on_cloud(self, msg: PointCloud2) -> None:
        self.rates[POINTS].tick()
        self._queue((POINTS, msg), msg.header.stamp)

    def _on_rgbd(self, depth_msg: Image, color_msg: Image | None) -> None:
        self.rates[DEPTH].tick()
        if color_msg is not None:
            self.rates[COLOR].tick()
        self._queue(("rgbd", depth_msg, color_msg), depth_msg.header.stamp)

    def _queue(self, item, stamp) -> None:
        why = self._implausible(stamp_to_seconds(stamp))
        if why:
            for name in _inputs_of(item):
                self._drop(name, reasons.IMPLAUSIBLE_STAMP, why)
            return
        ingest = self.ingest
        if ingest is not None:
            ingest.put(item)

    def _implausible(self, stamp: float) -> str:
        """Why a sensor stamp cannot be believed ('' when it can)."""
        if stamp <= 0.0:
            return "stamped zero (the driver sets no time)"
        now = self._node.get_clock().now().nanoseconds * 1e-9
        limit = self._param("inputs.max_stamp_offset")
        if abs(stamp - now) > limit:
            return (
                f"stamped {stamp - now:+.0f} s from the node's clock (more than inputs.max_stamp_offset, "
                f"{limit:g} s)"
            )
        return ""

    def _overflowed(self, item) -> None:
        detail = (
            f"fusing is slower than the input: the oldest of more than {self._param('inputs.max_pending')} "
            "waiting frames was dropped (inputs.max_pending)"
        )
        for name in _inputs_of(item):
            self._drop(name, reasons.TOO_OLD, detail)

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            camera_matrix(msg)  # keep only usable intrinsics: a bad one must not spoil later frames
        except (MalformedMessage, ValueError) as error:
            self._drop("camera_info", reasons.INVALID, error)
            return
        with self._camera_info_arrived:
            self._camera_info = msg
            self._camera_info_arrived.notify_all()
        self.counters.fused("camera_info")

    def _wait_camera_info(self) -> CameraInfo:
        """The newest usable camera info, waiting up to pose.timeout for the first one (it travels
        on its own topic and may come a moment after the first images)."""
        with self._camera_info_arrived:
            if self._camera_info_arrived.wait_for(
                lambda: self._camera_info is not None, timeout=self._param("pose.timeout")
            ):
                return self._camera_info
        raise _NoCameraInfo(f"nothing usable on {self._topic('camera_info')} yet")

    def _fuse(self, item) -> None:
        """The ingest worker: one queued frame into the map, or counted under why it could not be."""
        pipeline = self._pipeline()
        if pipeline is None:
            return
        used = _inputs_of(item)
        try:
            if item[0] == POINTS:
                frame = cloud_frame(item[1], pose=self._sensor_pose)
            else:
                frame = rgbd_frame(
                    item[1],
                    self._wait_camera_info(),
                    item[2],
                    pose=self._sensor_pose,
                    on_resize=self._note_once,
                )
            fuse(pipeline, frame)
        except Exception as error:  # noqa: BLE001 - every failure is counted under its reason
            for name in used:
                self._drop(name, _reason(error), error)
            return
        for name in used:
            self.counters.fused(name)

    # --- stalls and diagnostics -----------------------------------------------------------------
    def _warn_stalled(self) -> None:
        """Say why an input that has publishers fuses nothing (or receives nothing) for a while."""
        inputs = self.subscriptions
        if inputs is None:
            return
        now = time.monotonic()
        counts = self.counters.snapshot()
        for name, topic in SENSOR_TOPICS.items():
            if name in ("camera_info", "pose"):
                continue
            if name not in counts and inputs.resolve(topic) not in inputs.chosen():
                continue
            if not inputs.publishers(topic):
                self._publishers_seen.pop(name, None)
                continue
            seen = self._publishers_seen.setdefault(name, now)
            count = counts.get(name)
            if count is None or count.received == 0:
                if now - seen >= STALL_SECONDS:
                    qos = inputs.chosen().get(inputs.resolve(topic), "?")
                    self._warn_throttled(
                        f"{name}/stalled",
                        f"{inputs.resolve(topic)} has publishers but no "
                        f"message arrived in {now - seen:.0f} s (subscribed {qos}; large "
                        "messages over best effort DDS can be lost whole: inputs.qos)",
                        STALL_WARN_PERIOD,
                    )
                continue
            why = self.counters.stalled(name, STALL_SECONDS)
            if why is not None:
                self._warn_throttled(
                    f"{name}/stalled",
                    f"nothing from {inputs.resolve(topic)} fused for "
                    f"{STALL_SECONDS:g} s or more: {why} ({count.describe()})",
                    STALL_WARN_PERIOD,
                )

    def diagnostic_values(self) -> dict[str, str]:
        """The inputs' part of /diagnostics: rates, counters, QoS, what waits, the pose source."""
        values = {f"input rate {k} (Hz)": f"{m.rate():.1f}" for k, m in self.rates.items()}
        values.update(self.counters.key_values())
        inputs, sync, ingest, transforms = (
            self.subscriptions,
            self.sync,
            self.ingest,
            self.transforms,
        )
        if inputs is not None:
            values.update({f"qos {topic}": qos for topic, qos in inputs.chosen().items()})
        if sync is not None and hasattr(sync.synchronizer, "pending"):
            for name, waiting in zip((DEPTH, COLOR), sync.synchronizer.pending()):
                values[f"{name} waiting for its pair"] = str(waiting)
        if ingest is not None:
            values["frames waiting to be fused"] = str(ingest.pending())
        if transforms is not None:
            values["poses"] = f"/tf through the {transforms.backend}"
        return values


def _inputs_of(item) -> tuple[str, ...]:
    """The inputs a queued frame came from (their counters share its fate)."""
    if item[0] == POINTS:
        return (POINTS,)
    return (DEPTH, COLOR) if item[2] is not None else (DEPTH,)


def _reason(error: BaseException) -> str:
    """The input-counter reason a failed ingest is counted under."""
    from sole_ros.scene import InvalidInput

    if isinstance(error, PoseLookupError):
        return reasons.NO_POSE
    if isinstance(error, _NoCameraInfo):
        return reasons.NO_CAMERA_INFO
    if isinstance(error, InvalidInput):
        return reasons.REJECTED
    return reasons.INVALID
