"""sole_node: the ROS 2 front end of sole_ros, a lifecycle (managed) node.

configure loads the model and builds the scene map; activate starts subscriptions, publishers'
timers and the segmentation worker; deactivate and cleanup release them. With ``autostart`` (the
default) it configures and activates itself on start-up.

Everything here converts messages, parameters and services into calls on
sole_ros.pipeline.PerceptionPipeline; the perception itself is ROS-free.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped, TransformStamped, Vector3
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sole_ros.messages import input_counters as reasons
from sole_ros.messages.input_counters import InputCounters
from sole_ros.messages.transform_tree import frame_name
from sole_ros.msg import ObjectInstance
from sole_ros.ros import parameters
from sole_ros.ros.callback_executor import PooledCallbackExecutor
from sole_ros.ros.errors import MalformedMessage
from sole_ros.ros.images import camera_matrix, color_to_rgb, depth_to_metres
from sole_ros.ros.ingest_queue import IngestQueue
from sole_ros.ros.input_qos import AdaptiveSubscriptions
from sole_ros.ros.markers import instance_markers
from sole_ros.ros.pointcloud import make_cloud, read_points
from sole_ros.ros.sync import OUT_OF_ORDER, lost_events, subscribe_synchronized
from sole_ros.ros.tf_listener import make_transform_listener, tf2_ros_available, tf_messages_available
from sole_ros.ros.transforms import PoseBuffer, PoseLookupError, extrinsic_matrix, seconds_to_stamp, stamp_to_seconds
from sole_ros.srv import LoadScene, QueryObjects, SaveScene

NOT_ACTIVE = "node is not active (lifecycle state: {})"
POSE_MESSAGES = {"odometry": Odometry, "pose_stamped": PoseStamped, "transform_stamped": TransformStamped}
# Callbacks that may run at once: queries waiting for a segmentation hold a thread each while the
# others keep ingesting; more requests wait in the middleware's queues.
CALLBACK_THREADS = 8
QUERY_SEGMENT_TIMEOUT = 300.0  # a query waits at most this long for the segmentation it needs (s)
POSE_END_TOLERANCE = 0.1  # pose topic: a stamp this close past the newest pose takes it (no extrapolation)
STALL_SECONDS = 5.0        # an input receiving but fusing nothing this long is warned about
STALL_WARN_PERIOD = 10.0   # ... at most this often per input
QOS_RECHECK_PERIOD = 1.0   # inputs.qos auto: how often publishers' QoS is re-checked
SENSOR_TOPICS = {"points": "points", "depth": "depth/image", "color": "color/image",
                 "camera_info": "depth/camera_info", "pose": "pose"}


class RateMeter:
    """Messages per second over the last few seconds, for diagnostics."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._times: deque[float] = deque()

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return len(self._times) / self.window


class SoleNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__("sole", **kwargs)
        parameters.declare_all(self)
        self._state_label = "unconfigured"
        self.pipeline = None
        self._model_error = ""
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._segmented = threading.Condition()
        self._last_segment_error = ""
        self._entities: list = []       # timers of the active state
        self._inputs: AdaptiveSubscriptions | None = None  # subscriptions of the active state
        self._sync = None
        self._transforms = None
        self._pose_buffer: PoseBuffer | None = None
        self._camera_info: CameraInfo | None = None
        self._pose_child_frame = ""  # child_frame_id of the pose topic's messages (Odometry, TransformStamped)
        self._pose_frames_warned: set[tuple[str, str]] = set()
        self._camera_info_arrived = threading.Condition()
        self._ingest: IngestQueue | None = None
        self._rates = {name: RateMeter() for name in ("points", "depth", "color", "pose")}
        self.counters = InputCounters()
        self._last_warn: dict[str, float] = {}
        self._publishers_seen: dict[str, float] = {}  # input -> when its publishers were first seen
        self._service_group = ReentrantCallbackGroup()
        self._timer_group = MutuallyExclusiveCallbackGroup()

        # Services exist in every state: outside "active" they answer with the reason.
        srv = dict(callback_group=self._service_group)
        self.create_service(QueryObjects, "~/query", self._on_query, **srv)
        self.create_service(Trigger, "~/segment", self._on_segment, **srv)
        self.create_service(Trigger, "~/reset", self._on_reset, **srv)
        self.create_service(SaveScene, "~/save_scene", self._on_save, **srv)
        self.create_service(LoadScene, "~/load_scene", self._on_load, **srv)

        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.instances_pub = self.create_lifecycle_publisher(PointCloud2, "~/instances", latched)
        self.markers_pub = self.create_lifecycle_publisher(MarkerArray, "~/markers", latched)
        self.scene_pub = self.create_lifecycle_publisher(PointCloud2, "~/scene", latched)
        self.objects_pub = self.create_lifecycle_publisher(MarkerArray, "~/objects", latched)
        self.object_points_pub = self.create_lifecycle_publisher(PointCloud2, "~/objects/points", latched)
        self._object_labels: dict[int, str] = {}  # stable object id -> the label a query last gave it
        # Diagnostics in every state, so a failed configure is visible there too.
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.param("output.diagnostics_period"), self._publish_diagnostics,
                          callback_group=self._timer_group)
        self.create_timer(1.0, self._warn_stalled_inputs, callback_group=self._timer_group)

        if self.param("autostart"):
            # Deferred to the first spin so the node is fully constructed first.
            self._autostart_timer = self.create_timer(0.0, self._autostart, callback_group=self._timer_group)

    # --- helpers --------------------------------------------------------------------------------
    def param(self, name: str):
        return self.get_parameter(name).value

    def _warn_throttled(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) >= period:
            self._last_warn[key] = now
            self.get_logger().warning(text)

    def _drop(self, name: str, reason: str, error) -> None:
        """Count a dropped input message under its reason and warn (throttled per input and reason)."""
        dropped = self.counters.dropped(name, reason, str(error))
        self._warn_throttled(f"{name}/{reason}", f"{self._topic(name)} message dropped, {reason}: "
                                                 f"{error} (dropped so far for this reason: {dropped})")

    def _topic(self, name: str) -> str:
        """An input's full topic name (namespace and remapping applied), for messages to the user."""
        return self.resolve_topic_name(SENSOR_TOPICS[name])

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        # rclpy turns an exception in a transition into ERROR without a word: say why here
        configured = self.trigger_configure()
        if configured != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(f"autostart: configure did not succeed ({configured.name}): "
                                    f"{self._model_error or 'see the error above'}; the node stays unconfigured")
            return
        activated = self.trigger_activate()
        if activated != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error(f"autostart: activate did not succeed ({activated.name})")

    # --- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            from sole_ros.pipeline import PipelineSettings, build_pipeline
        except Exception as error:  # a broken installation: a reason, not a silent ERROR
            self._model_error = f"the library does not import: {type(error).__name__}: {error}"
            self.get_logger().error(f"configure failed: {self._model_error}")
            return TransitionCallbackReturn.FAILURE

        values = {p.name: self.param(p.name) for p in parameters.PARAMETERS}
        problems = parameters.validate(values)
        if values["pose.source"] == "tf" and not (tf2_ros_available() or tf_messages_available()):
            problems.append("pose.source=tf needs tf2_msgs (run scripts/setup.sh, which builds it) or tf2_ros; "
                            "or use pose.source=topic")
        if problems:
            self._model_error = "; ".join(problems)
            self.get_logger().error(f"configure failed: {self._model_error}")
            return TransitionCallbackReturn.FAILURE
        try:
            settings = PipelineSettings.from_parameters(values)
            self.pipeline = build_pipeline(settings, log=self.get_logger().info)
        except Exception as error:  # a missing file or weights: a reason, not a crash
            self._model_error = f"model not loaded: {error}"
            self.get_logger().error(self._model_error)
            self.pipeline = None
            return TransitionCallbackReturn.FAILURE
        self._model_error = ""
        self._state_label = "inactive"
        contrast = ", ".join(settings.contrast_phrases) or "none (SOLE's binary query)"
        self.get_logger().info(f"configured: model on {self.pipeline.device}, fixed frame "
                               f"'{values['fixed_frame']}', contrast phrases: {contrast}, test-time views: "
                               f"{settings.test_time_views} at scene scale {settings.scene_scale}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._inputs = AdaptiveSubscriptions(self, self.param("inputs.qos"), self.param("inputs.queue_size"),
                                             log=self.get_logger().info)
        self._ingest = IngestQueue(self._fuse, self.param("inputs.max_pending"), self._overflowed)
        if self.param("inputs.cloud"):
            self._subscribe_one(PointCloud2, "points", self._on_cloud)
        if self.param("inputs.rgbd"):
            self._subscribe_one(CameraInfo, "camera_info", self._on_info, latest_value=True)
            if self.param("inputs.use_color"):
                self._inputs.add([SENSOR_TOPICS["depth"], SENSOR_TOPICS["color"]], self._subscribe_rgbd)
            else:
                self._subscribe_one(Image, "depth", lambda msg: self._on_rgbd(msg, None))
        if self.param("pose.source") == "topic":
            self._pose_buffer = PoseBuffer()
            self._extrinsic = extrinsic_matrix(list(self.param("pose.sensor_extrinsic")))
            # Its own group, like every input: the ingest worker waits for poses (_sensor_pose) while
            # pose messages keep coming in.
            self._subscribe_one(POSE_MESSAGES[self.param("pose.topic_type")], "pose", self._on_pose)
        else:
            # tf2_ros, or the package's listener spinning on a participant and thread of its own.
            self._transforms = make_transform_listener(self)
            self.get_logger().info(f"poses from /tf and /tf_static through the {self._transforms.backend}")
        self._entities.append(self.create_timer(QOS_RECHECK_PERIOD, self._inputs.refresh,
                                                callback_group=self._timer_group))
        period = self.param("segmentation.period")
        if period > 0:
            self._entities.append(self.create_timer(period, self._wake.set, callback_group=self._timer_group))
        if self.param("output.scene_period") > 0:
            self._entities.append(self.create_timer(self.param("output.scene_period"), self._publish_scene,
                                                    callback_group=self._timer_group))
        self._stop.clear()
        self._worker = threading.Thread(target=self._segmentation_worker, name="sole-segmentation", daemon=True)
        self._worker.start()
        self._state_label = "active"
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_active()
        self._state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_active()
        self.pipeline = None
        self._state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_active()
        self.pipeline = None
        self._state_label = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def _release_active(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        for timer in self._entities:
            self.destroy_timer(timer)
        self._entities = []
        if self._ingest is not None:
            self._ingest.stop()
            self._ingest = None
        if self._inputs is not None:
            self._inputs.destroy()
            self._inputs = None
        self._sync = None
        if self._transforms is not None:
            self._transforms.destroy(self)
            self._transforms = None

    # --- input subscriptions (re-created by AdaptiveSubscriptions when the QoS must change) --------
    def _subscribe_one(self, msg_type, name: str, callback, latest_value: bool = False) -> None:
        def received(msg):
            self.counters.received(name)
            callback(msg)

        def create(profiles):
            # A group per input: callbacks only count and queue (the ingest worker fuses), so inputs
            # run side by side and one stream's burst never leaves another's messages untaken until
            # the DDS reader's history overwrites them; each input stays in order.
            subscription = self.create_subscription(msg_type, SENSOR_TOPICS[name], received, profiles[0],
                                                    callback_group=MutuallyExclusiveCallbackGroup(),
                                                    event_callbacks=lost_events(self._lost, name))
            return lambda: self.destroy_subscription(subscription)

        self._inputs.add([SENSOR_TOPICS[name]], create, latest_value)

    def _lost(self, name: str, count: int) -> None:
        if count > 0:
            self.counters.dropped(name, reasons.LOST, n=count,
                                  detail="the middleware lost it on the way (large messages over best effort?)")
            if name == "camera_info":
                return  # read best effort on purpose: the next one replaces it, nothing to warn about
            self._warn_throttled(f"{name}/{reasons.LOST}", f"{count} {self._topic(name)} message(s) lost in "
                                 "transport before reaching the node (large messages over best-effort DDS lose "
                                 "fragments: a reliable publisher, or inputs.qos, avoids it)")

    def _subscribe_rgbd(self, profiles):
        names = ("depth", "color")

        def dropped(index: int, why: str) -> None:
            reason = reasons.TOO_OLD if why == OUT_OF_ORDER else reasons.NO_COLOUR_PAIR
            detail = ("not newer than the last pair" if why == OUT_OF_ORDER else
                      f"no {names[1 - index]} image within inputs.sync_slop "
                      f"({self.param('inputs.sync_slop'):g} s)")
            self._drop(names[index], reason, detail)

        self._sync = subscribe_synchronized(
            self, [(Image, SENSOR_TOPICS["depth"]), (Image, SENSOR_TOPICS["color"])], self._on_rgbd,
            slop=self.param("inputs.sync_slop"), queue_size=self.param("inputs.queue_size"), qos=profiles,
            backend=self.param("inputs.sync_backend"),
            callback_group=[MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()],
            on_receive=lambda index, msg: self.counters.received(names[index]), on_drop=dropped,
            on_lost=lambda index, count: self._lost(names[index], count))
        sync = self._sync
        return lambda: sync.destroy(self)

    # --- poses ----------------------------------------------------------------------------------
    def _on_pose(self, msg) -> None:
        self._pose_child_frame = getattr(msg, "child_frame_id", "") or self._pose_child_frame
        try:
            self._pose_buffer.add_message(msg)
            self._rates["pose"].tick()
            self.counters.fused("pose")
        except (ValueError, MalformedMessage) as error:
            self._drop("pose", reasons.INVALID, error)

    def _check_pose_frame(self, sensor_frame: str) -> None:
        """Warn (once per pair) when the pose topic tracks another frame than the sensor's and no
        extrinsic bridges them: the map would be built from the wrong pose, silently."""
        child = self._pose_child_frame
        if not child or not sensor_frame or frame_name(child) == frame_name(sensor_frame):
            return
        if not np.allclose(self._extrinsic, np.eye(4)) or (child, sensor_frame) in self._pose_frames_warned:
            return
        self._pose_frames_warned.add((child, sensor_frame))
        self.get_logger().warning(
            f"the pose topic tracks '{child}' but the sensor messages are in '{sensor_frame}', and "
            f"pose.sensor_extrinsic is the identity: set the extrinsic ({child} -> {sensor_frame}) or use "
            "pose.source:=tf")

    def _sensor_pose(self, header) -> np.ndarray:
        """World-from-sensor at the header's stamp; PoseLookupError with the reason when unknown."""
        stamp = stamp_to_seconds(header.stamp)
        if self._pose_buffer is not None:
            self._check_pose_frame(header.frame_id)
            # The pose of this stamp may still be on its way (another topic): wait up to the timeout.
            timeout = self.param("pose.timeout")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    world_from_base = self._pose_buffer.lookup(stamp, tolerance=POSE_END_TOLERANCE)
                    return world_from_base @ self._extrinsic
                except PoseLookupError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01)
        if not header.frame_id:
            raise PoseLookupError("message has an empty frame_id")
        fixed = self.param("fixed_frame")
        try:
            return self._transforms.lookup(fixed, header.frame_id, stamp, self.param("pose.timeout"))
        except PoseLookupError as error:
            raise PoseLookupError(f"no transform {fixed} <- {header.frame_id} at {stamp:.3f}: {error}") from None

    # --- sensor input ---------------------------------------------------------------------------
    def _on_cloud(self, msg: PointCloud2) -> None:
        self._rates["points"].tick()
        self._queue(("points", msg), msg.header.stamp)

    def _on_rgbd(self, depth_msg: Image, color_msg: Image | None) -> None:
        self._rates["depth"].tick()
        if color_msg is not None:
            self._rates["color"].tick()
        self._queue(("rgbd", depth_msg, color_msg), depth_msg.header.stamp)

    def _queue(self, item, stamp) -> None:
        why = self._implausible(stamp_to_seconds(stamp))
        if why:
            for name in _inputs_of(item):
                self._drop(name, reasons.IMPLAUSIBLE_STAMP, why)
            return
        ingest = self._ingest
        if ingest is not None:
            ingest.put(item)

    def _implausible(self, stamp: float) -> str:
        """Why a sensor stamp cannot be believed ('' when it can)."""
        if stamp <= 0.0:
            return "stamped zero (the driver sets no time)"
        now = self.get_clock().now().nanoseconds * 1e-9
        limit = self.param("inputs.max_stamp_offset")
        if abs(stamp - now) > limit:
            return (f"stamped {stamp - now:+.0f} s from the node's clock (more than inputs.max_stamp_offset, "
                    f"{limit:g} s)")
        return ""

    def _overflowed(self, item) -> None:
        detail = (f"fusing is slower than the input: the oldest of more than {self.param('inputs.max_pending')} "
                  "waiting frames was dropped (inputs.max_pending)")
        for name in _inputs_of(item):
            self._drop(name, reasons.TOO_OLD, detail)

    def _fuse(self, item) -> None:
        """The ingest worker: one queued frame into the map, or counted under why it could not be."""
        if self.pipeline is None:
            return
        if item[0] == "points":
            self._fuse_cloud(item[1])
        else:
            self._fuse_rgbd(item[1], item[2])

    def _fuse_cloud(self, msg: PointCloud2) -> None:
        try:
            xyz, rgb = read_points(msg)
            pose = self._sensor_pose(msg.header)
            self.pipeline.ingest_points(xyz, pose, colors=rgb, stamp=stamp_to_seconds(msg.header.stamp))
        except Exception as error:  # noqa: BLE001 - every failure is counted under its reason
            self._drop("points", _reason(error), error)
            return
        self.counters.fused("points")

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
            if self._camera_info_arrived.wait_for(lambda: self._camera_info is not None,
                                                  timeout=self.param("pose.timeout")):
                return self._camera_info
        raise _NoCameraInfo(f"nothing usable on {self._topic('camera_info')} yet")

    def _fuse_rgbd(self, depth_msg: Image, color_msg: Image | None) -> None:
        used = _inputs_of(("rgbd", depth_msg, color_msg))
        try:
            info = self._wait_camera_info()
            depth = depth_to_metres(depth_msg)
            K = camera_matrix(info, depth_msg)
            color = None
            if color_msg is not None:
                color = color_to_rgb(color_msg)
                if color.shape[:2] != depth.shape:
                    raise MalformedMessage(f"colour {color.shape[1]}x{color.shape[0]} and depth "
                                           f"{depth.shape[1]}x{depth.shape[0]} differ (register them)")
            pose = self._sensor_pose(depth_msg.header)
            self.pipeline.ingest_rgbd(depth, K, pose, color=color, stamp=stamp_to_seconds(depth_msg.header.stamp))
        except Exception as error:  # noqa: BLE001 - every failure is counted under its reason
            for name in used:
                self._drop(name, _reason(error), error)
            return
        for name in used:
            self.counters.fused(name)

    def _warn_stalled_inputs(self) -> None:
        """Say why an input that has publishers fuses nothing (or receives nothing) for a while."""
        if self._inputs is None or self._state_label != "active":
            return
        now = time.monotonic()
        counts = self.counters.snapshot()
        for name, topic in SENSOR_TOPICS.items():
            if name in ("camera_info", "pose"):
                continue
            if name not in counts and not self._subscribed(topic):
                continue
            if not self._inputs.publishers(topic):
                self._publishers_seen.pop(name, None)
                continue
            seen = self._publishers_seen.setdefault(name, now)
            count = counts.get(name)
            if count is None or count.received == 0:
                if now - seen >= STALL_SECONDS:
                    qos = self._inputs.chosen().get(self._inputs.resolve(topic), "?")
                    self._warn_throttled(f"{name}/stalled", f"{self._inputs.resolve(topic)} has publishers but no "
                                         f"message arrived in {now - seen:.0f} s (subscribed {qos}; large "
                                         "messages over best effort DDS can be lost whole: inputs.qos)",
                                         STALL_WARN_PERIOD)
                continue
            why = self.counters.stalled(name, STALL_SECONDS)
            if why is not None:
                self._warn_throttled(f"{name}/stalled", f"nothing from {self._inputs.resolve(topic)} fused for "
                                     f"{STALL_SECONDS:g} s or more: {why} ({count.describe()})", STALL_WARN_PERIOD)

    def _subscribed(self, topic: str) -> bool:
        return self._inputs is not None and self._inputs.resolve(topic) in self._inputs.chosen()

    # --- segmentation worker --------------------------------------------------------------------
    def _segmentation_worker(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                break
            pipeline = self.pipeline
            if pipeline is None or not pipeline.needs_segmentation():
                with self._segmented:
                    self._segmented.notify_all()
                continue
            try:
                result = pipeline.segment()
                self._last_segment_error = ""
                self.get_logger().info(f"segmented scene v{result.version}: {len(result.snapshot)} voxels "
                                       f"in {result.seconds:.2f} s")
                if self.param("output.full_segmentation"):
                    self._publish_instances(pipeline.full_segmentation(), result)
                if result.objects:
                    self._publish_objects(result)
            except Exception as error:  # keep the worker alive; report through diagnostics
                self._last_segment_error = str(error)
                self.get_logger().error(f"segmentation failed: {error}")
            with self._segmented:
                self._segmented.notify_all()

    def _request_segmentation(self, timeout: float) -> bool:
        """Wake the worker and wait until the map as it is now is segmented. A camera that keeps
        streaming changes the map meanwhile: waiting for the then-current version could last as
        long as the stream."""
        pipeline = self.pipeline
        if pipeline is None:
            return False
        target = pipeline.map.version

        def done() -> bool:
            current = pipeline.segmentation
            return current is not None and current.version >= target

        deadline = time.monotonic() + timeout
        with self._segmented:
            while not done():
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._last_segment_error or self.pipeline is not pipeline:
                    break
                self._segmented.wait(timeout=min(remaining, 1.0))
        return done()

    # --- services -------------------------------------------------------------------------------
    def _inactive_reason(self) -> str | None:
        if self._state_label != "active":
            return self._model_error or NOT_ACTIVE.format(self._state_label)
        return None

    def _on_query(self, request: QueryObjects.Request, response: QueryObjects.Response):
        from sole_ros.pipeline import QueryLimits, QueryRejected

        response.header.frame_id = self.param("fixed_frame")
        reason = self._inactive_reason()
        limits = QueryLimits(self.param("query.max_phrases"), self.param("query.max_phrase_length"))
        try:
            phrases = limits.check(list(request.phrases))
            if reason:
                raise QueryRejected(reason)
            max_results = int(request.max_results) or self.param("query.default_max_results")
            self._refresh_if_stale()
            answer = self.pipeline.query(phrases, max_results=max_results, min_score=float(request.min_score))
        except QueryRejected as error:
            response.success, response.message = False, str(error)
            return response
        except Exception as error:  # the model failed on this input: answer, do not crash
            self.get_logger().error(f"query failed: {error}")
            response.success, response.message = False, f"query failed: {error}"
            return response
        header = Header(frame_id=self.param("fixed_frame"), stamp=seconds_to_stamp(answer.stamp))
        coords = answer.segmentation.snapshot.coords
        colors = answer.segmentation.snapshot.colors
        response.header = header
        # the object memory's stable id; without the memory, the rank in this answer
        ids = answer.object_ids or list(range(len(answer.instances)))
        response.instances = [self._instance_msg(object_id, inst, header, coords, colors, request.include_points)
                              for object_id, inst in zip(ids, answer.instances)]
        for object_id, inst in zip(answer.object_ids, answer.instances):
            if object_id:
                self._object_labels[object_id] = inst.label
        response.success = True
        response.message = (f"{len(answer.instances)} instance(s) for {len(phrases)} phrase(s) "
                            f"in scene v{answer.segmentation.version}")
        if not self.param("output.full_segmentation"):
            self._publish_instances(answer.instances, answer.segmentation)
        return response

    def _refresh_if_stale(self) -> None:
        """Segment first when the last segmentation lags the map by more than query.max_staleness."""
        pipeline = self.pipeline
        if pipeline.segmentation_is_stale(self.param("query.max_staleness")):
            # A failure here still lets the query use the last finished segmentation, if any.
            self._request_segmentation(timeout=QUERY_SEGMENT_TIMEOUT)

    @staticmethod
    def _instance_msg(index: int, inst, header, coords, colors, include_points: bool) -> ObjectInstance:
        msg = ObjectInstance(id=index, label=inst.label, score=float(inst.score), num_points=int(inst.num_points))
        msg.centroid = Point(**dict(zip("xyz", map(float, inst.centroid))))
        msg.bbox_center = Point(**dict(zip("xyz", map(float, inst.bbox_center))))
        msg.bbox_size = Vector3(**dict(zip("xyz", map(float, inst.bbox_size))))
        if include_points:
            idx = inst.point_indices
            msg.points = make_cloud(header, coords[idx], (colors[idx] * 255).astype(np.uint8))
        return msg

    def _publish_instances(self, instances, segmentation) -> None:
        header = Header(frame_id=self.param("fixed_frame"), stamp=seconds_to_stamp(segmentation.snapshot.stamp))
        coords, colors = segmentation.snapshot.coords, segmentation.snapshot.colors
        parts = [inst.point_indices for inst in instances]
        idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        ids = np.concatenate([np.full(len(p), i, np.uint32) for i, p in enumerate(parts)]) if parts \
            else np.zeros(0, np.uint32)
        scores = np.concatenate([np.full(len(p), inst.score, np.float32) for p, inst in zip(parts, instances)]) \
            if parts else np.zeros(0, np.float32)
        cloud = make_cloud(header, coords[idx], (colors[idx] * 255).astype(np.uint8),
                           {"instance_id": ids, "score": scores})
        labelled = [_Labelled(i, inst) for i, inst in enumerate(instances)]
        self.instances_pub.publish(cloud)
        self.markers_pub.publish(instance_markers(header, labelled))

    def _publish_objects(self, segmentation) -> None:
        """~/objects: a box and "#id label" per remembered object of this segmentation (labels from
        the queries that named them), and ~/objects/points: their points with an object_id field."""
        header = Header(frame_id=self.param("fixed_frame"), stamp=seconds_to_stamp(segmentation.snapshot.stamp))
        coords, colors = segmentation.snapshot.coords, segmentation.snapshot.colors
        objects = segmentation.objects
        idx = np.concatenate([inst.point_indices for _, inst in objects])
        ids = np.concatenate([np.full(len(inst.point_indices), object_id, np.uint32) for object_id, inst in objects])
        self.object_points_pub.publish(make_cloud(header, coords[idx], (colors[idx] * 255).astype(np.uint8),
                                                  {"object_id": ids}))
        labelled = [_Labelled(object_id, inst, f"#{object_id} {self._object_labels.get(object_id, '')}".strip())
                    for object_id, inst in objects]
        self.objects_pub.publish(instance_markers(header, labelled, ns="sole_objects", show_score=False))
        if len(self._object_labels) > 4 * len(objects) + 1000:  # ids keep counting up: keep the current ones
            shown = {object_id for object_id, _ in objects}
            labels = dict(self._object_labels)  # a copy: query threads add to it meanwhile
            self._object_labels = {k: v for k, v in labels.items() if k in shown}

    def _on_segment(self, request, response):
        reason = self._inactive_reason()
        if reason:
            response.success, response.message = False, reason
            return response
        if self.pipeline.map.num_voxels == 0:
            response.success, response.message = False, "no scene yet: nothing has been accumulated"
            return response
        self._last_segment_error = ""
        done = self._request_segmentation(timeout=600.0)
        seg = self.pipeline.segmentation
        if done and seg is not None:
            response.success = True
            response.message = f"scene v{seg.version}: {len(seg.snapshot)} voxels in {seg.seconds:.2f} s"
        else:
            response.success = False
            response.message = f"segmentation failed: {self._last_segment_error or 'timed out'}"
        return response

    def _on_reset(self, request, response):
        reason = self._inactive_reason() if self.pipeline is None else None
        if reason:
            response.success, response.message = False, reason
            return response
        self.pipeline.reset()
        response.success, response.message = True, "scene cleared"
        return response

    def _on_save(self, request, response):
        return self._scene_file_call(response, "save", request.path)

    def _on_load(self, request, response):
        return self._scene_file_call(response, "load", request.path)

    def _scene_file_call(self, response, action: str, name: str):
        """Save or load the scene as a file named inside scene.directory (SceneFolder's rules);
        every refusal or failure is answered with its reason, and the map stays as it was."""
        from sole_ros.scene.scene_folder import SceneFolder

        if self.pipeline is None:
            response.success, response.message = False, self._inactive_reason() or "not configured"
            return response
        folder = SceneFolder(self.param("scene.directory"))
        try:
            if action == "save":
                path = folder.path_to_save(name)
                self.pipeline.save(path)
                done = f"saved {self.pipeline.map.num_voxels} voxels to {path}"
            else:
                path = folder.path_to_load(name)
                self.pipeline.load(path)
                done = f"loaded {self.pipeline.map.num_voxels} voxels from {path}"
            response.success, response.message = True, done
        except Exception as error:  # noqa: BLE001 - whatever a request or a file does: a reason, never a crash
            reason = str(error) if isinstance(error, (OSError, ValueError)) else f"{type(error).__name__}: {error}"
            response.success, response.message = False, f"could not {action} {name!r}: {reason}"
            self.get_logger().warning(response.message)
        return response

    # --- periodic outputs -----------------------------------------------------------------------
    def _publish_scene(self) -> None:
        if self.pipeline is None or self.pipeline.map.num_voxels == 0:
            return
        snapshot = self.pipeline.map.export()
        header = Header(frame_id=self.param("fixed_frame"), stamp=seconds_to_stamp(snapshot.stamp))
        self.scene_pub.publish(make_cloud(header, snapshot.coords, (snapshot.colors * 255).astype(np.uint8)))

    def _publish_diagnostics(self) -> None:
        # The fully qualified name tells robots (namespaces) apart on the shared /diagnostics.
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: perception", hardware_id="sole_ros")
        values = {f"input rate {k} (Hz)": f"{m.rate():.1f}" for k, m in self._rates.items()}
        values["lifecycle state"] = self._state_label
        values.update(self.counters.key_values())
        inputs, transforms = self._inputs, self._transforms
        if inputs is not None:
            values.update({f"qos {topic}": qos for topic, qos in inputs.chosen().items()})
        sync, ingest = self._sync, self._ingest
        if sync is not None and hasattr(sync.synchronizer, "pending"):
            for name, waiting in zip(("depth", "color"), sync.synchronizer.pending()):
                values[f"{name} waiting for its pair"] = str(waiting)
        if ingest is not None:
            values["frames waiting to be fused"] = str(ingest.pending())
        if transforms is not None:
            values["poses"] = f"/tf through the {transforms.backend}"
        pipeline = self.pipeline
        if pipeline is not None:
            stats = pipeline.map.stats()
            values.update({"map voxels": str(stats["voxels"]), "map memory (bytes)": str(stats["memory_bytes"]),
                           "map version": str(stats["version"]), "map stamp": f"{stats['stamp']:.6f}",
                           "model device": str(pipeline.device)})
            seg = pipeline.segmentation
            values["last segmentation age (s)"] = f"{time.time() - seg.finished_at:.1f}" if seg else "never"
            memory = pipeline.memory
            if memory is not None:
                values.update({"objects remembered" if name == "objects" else f"objects {name}": str(count)
                               for name, count in memory.stats().items() if name != "voxels"})
        status.level = DiagnosticStatus.OK
        status.message = "ok"
        if self._model_error or self._last_segment_error:
            status.level = DiagnosticStatus.ERROR
            status.message = self._model_error or f"segmentation failed: {self._last_segment_error}"
        elif self._state_label != "active":
            status.level = DiagnosticStatus.WARN
            status.message = NOT_ACTIVE.format(self._state_label)
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)


class _NoCameraInfo(MalformedMessage):
    """A depth image arrived before any usable camera info."""


def _inputs_of(item) -> tuple[str, ...]:
    """The inputs a queued frame came from (their counters share its fate)."""
    if item[0] == "points":
        return ("points",)
    return ("depth", "color") if item[2] is not None else ("depth",)


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


class _Labelled:
    """An inference Instance with the id it has in this answer (what markers need)."""

    def __init__(self, index: int, inst, label: str | None = None):
        self.id = index
        self.label = inst.label if label is None else label
        self.score, self.num_points = inst.score, inst.num_points
        self.centroid, self.bbox_center, self.bbox_size = inst.centroid, inst.bbox_center, inst.bbox_size


def main(args=None) -> int:
    rclpy.init(args=args)
    node = SoleNode()
    executor = PooledCallbackExecutor(num_threads=CALLBACK_THREADS)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._release_active()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
