"""Replay of a recorded ROS 2 bag (mcap or sqlite3) through the perception pipeline, without ROS.

The bag is read with the rosbags library, whose message dataclasses carry the ROS field names, so
the same decoders as the node's (sole_ros.messages) apply. Reading takes two passes: first the
small streams (poses, /tf, camera info), then the sensor stream, so that each frame's pose can be
interpolated between the odometry messages around it whatever order they were recorded in.

Topics not named are found by type: depth and colour images are told apart by their encoding,
camera info is the CameraInfo topic nearest the depth topic by name. Poses come from the tf chain
(/tf + /tf_static) from the fixed frame to each sensor message's header.frame_id whenever the bag
has /tf; from a pose topic (Odometry / PoseStamped / TransformStamped) only when one is named
(``BagTopics.pose``, ``--pose-topic``) or the bag has no /tf. A pose topic gives the pose of its
child frame, which is often not the camera's optical frame: that needs ``sensor_extrinsic``, and
the replay warns when the frames differ and none is given.

Depth and colour are paired, and frames built, by the node's own rules: the synchroniser of
sole_ros.messages.sync (``sync_tolerance`` defaults to the node's ``inputs.sync_slop``) and the
frame builder of sole_ros.messages.frames (a uniformly scaled colour image is resized to the depth
image, any other size difference refused).

Every input (points, depth, color) is counted: received, fused, and dropped by reason
(sole_ros.messages.input_counters), so that a stream that fuses nothing says why.

    with BagReplay("run.mcap") as replay:
        summary = replay.replay(pipeline)
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from sole_ros.messages.errors import MalformedMessage
from sole_ros.messages.frames import (
    COLOR,
    DEPTH,
    POINTS,
    SensorFrame,
    cloud_frame,
    fuse,
    rgbd_frame,
)
from sole_ros.messages.images import DEPTH_ENCODINGS
from sole_ros.messages.input_counters import (
    INVALID,
    NO_COLOUR_PAIR,
    NO_POSE,
    REJECTED,
    TOO_OLD,
    InputCounters,
)
from sole_ros.messages.poses import (
    POSE_END_TOLERANCE,
    PoseBuffer,
    PoseLookupError,
    extrinsic_matrix,
    matrix_from_pose_stamped,
    matrix_from_transform_stamped,
    stamp_to_seconds,
)
from sole_ros.messages.sync import OUT_OF_ORDER, ApproximateTimeSync
from sole_ros.messages.transform_tree import TransformTree, frame_name
from sole_ros.settings_table import BY_NAME

POINT_CLOUD = "sensor_msgs/msg/PointCloud2"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_TYPES = (
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "geometry_msgs/msg/TransformStamped",
)
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TF_TOPICS = ("/tf", "/tf_static")
POSE_FROM_TF = "tf"
# A frame is one point cloud or one depth image (with its colour); the input names are the node's.
FRAME_INPUTS = (POINTS, DEPTH)
# Depth or colour images kept per input while waiting for their partner: more than a live
# subscription's queue, since a recording may have written one stream in bursts.
MAX_PENDING = 100


class BagError(ValueError):
    """A bag that cannot be replayed as asked; ``str(exc)`` is one line saying why."""


@dataclass
class BagTopics:
    """Which topics feed the replay; None: found by type (see the module docstring)."""

    points: str | None = None
    depth: str | None = None
    color: str | None = None
    info: str | None = None
    pose: str | None = None  # a pose topic, or "tf" for /tf (the default whenever the bag has /tf)


@dataclass
class ReplayOptions:
    fixed_frame: str | None = None  # with /tf: the frame the scene is built in (default: the root)
    sensor_extrinsic: object = (
        None  # with a pose topic: base_from_sensor, [x y z roll pitch yaw] or 4x4
    )
    static_sensor: bool = False  # no poses: the sensor did not move (its frame is the fixed frame)
    # seconds between a depth image and its colour image: the node's inputs.sync_slop
    sync_tolerance: float = BY_NAME["inputs.sync_slop"].default
    pose_tolerance: float = POSE_END_TOLERANCE  # seconds a frame may lie beyond the first/last pose
    max_frames: int | None = None


@dataclass
class ReplaySummary:
    """What went in: ``counters`` per input (points, depth, color); ``frames`` the fused frames and
    ``dropped`` the frames (point clouds, depth images) not fused, by reason."""

    topics: BagTopics
    pose_source: str
    counters: InputCounters = field(default_factory=InputCounters)

    @property
    def frames(self) -> int:
        counts = self.counters.snapshot()
        return sum(counts[name].fused for name in FRAME_INPUTS if name in counts)

    @property
    def dropped(self) -> collections.Counter:
        counts = self.counters.snapshot()
        total = collections.Counter()
        for name in FRAME_INPUTS:
            if name in counts:
                total.update(counts[name].dropped)
        return total

    def input_counts(self) -> dict:
        """{input: {"received": n, "fused": n, "dropped": {reason: n}}}, for JSON."""
        return {
            name: {"received": c.received, "fused": c.fused, "dropped": dict(c.dropped)}
            for name, c in sorted(self.counters.snapshot().items())
        }

    def describe(self) -> str:
        used = ", ".join(f"{k}={v}" for k, v in vars(self.topics).items() if v)
        text = f"{self.frames} frames fused from {used} (poses: {self.pose_source})"
        counts = self.counters.describe()
        return f"{text}; {counts}" if counts else text


def _open_reader(path):
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise BagError(
            "replaying bags needs the rosbags package "
            "(pip install rosbags; version: constraints.txt)"
        ) from None

    path = os.fspath(path)
    if not os.path.exists(path):
        raise BagError(f"{path}: no such bag (give the bag folder, or its .mcap / .db3 file)")
    # A bag folder's storage file may be named directly; rosbags wants the folder then.
    if (
        os.path.isfile(path)
        and os.path.exists(os.path.join(os.path.dirname(path) or ".", "metadata.yaml"))
        and path.endswith((".db3", ".mcap"))
    ):
        path = os.path.dirname(path) or "."
    # The default type store decodes bags recorded without message definitions (older sqlite3).
    try:
        reader = AnyReader([Path(path)], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except Exception as error:  # noqa: BLE001 - rosbags raises many kinds for a damaged bag
        raise BagError(f"{path}: cannot read the bag: {_one_line(error)}") from None
    return reader


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:300]


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


class BagReplay:
    def __init__(
        self, path, topics: BagTopics | None = None, options: ReplayOptions | None = None, log=print
    ):
        self.path = os.fspath(path)
        self.options = options or ReplayOptions()
        self.log = log
        self._reader = _open_reader(self.path)
        self._depth_topic_cache: dict[str, bool] = {}
        try:
            self._types = {name: info.msgtype for name, info in self._reader.topics.items()}
            self.topics = self._choose_topics(topics or BagTopics())
        except BaseException:
            self._reader.close()
            raise
        self._pose_buffer: PoseBuffer | None = None
        self._tf: TransformTree | None = None
        self._infos: list[tuple[float, object]] = []
        self._fixed_frame = self.options.fixed_frame
        self._extrinsic = (
            None
            if self.options.sensor_extrinsic is None
            else extrinsic_matrix(self.options.sensor_extrinsic)
        )
        self._pose_child_frame = ""  # the pose topic's child_frame_id (Odometry, TransformStamped)
        self._warned: set[str] = set()
        self._shown: set[tuple] = set()  # (inputs, reason) drops already shown with their detail
        self._context_loaded = False

    # --- context -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "BagReplay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pose_source(self) -> str:
        if self.options.static_sensor:
            return "static sensor"
        return "/tf" if self.topics.pose == POSE_FROM_TF else self.topics.pose

    # --- topics ------------------------------------------------------------------------------------
    def _listing(self) -> str:
        return (
            ", ".join(f"{t} ({m.split('/')[-1]})" for t, m in sorted(self._types.items())) or "none"
        )

    def _of_type(self, *types: str) -> list[str]:
        return sorted(t for t, m in self._types.items() if m in types)

    def _dynamic_tf(self) -> list[str]:
        """The /tf topics (any namespace), /tf_static left out."""
        return [t for t in self._of_type(TF_MESSAGE) if not t.endswith("_static")]

    def _check(self, topic: str | None, what: str, types: tuple[str, ...]) -> None:
        if topic is None:
            return
        if topic not in self._types:
            raise BagError(
                f"{self.path}: no topic {topic!r} for {what} in the bag (topics: {self._listing()})"
            )
        if self._types[topic] not in types:
            raise BagError(
                f"{self.path}: topic {topic!r} is {self._types[topic]}, but {what} must be "
                f"{' or '.join(types)}"
            )

    def _messages(self, topics):
        """(connection, bag time ns, raw) of the topics in bag order; a damaged bag -> BagError."""
        connections = [c for c in self._reader.connections if c.topic in topics]
        if not connections:
            return
        iterator = self._reader.messages(connections=connections)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # noqa: BLE001 - rosbags/mcap/sqlite raise many kinds
                raise BagError(f"{self.path}: the bag is damaged: {_one_line(error)}") from None
            yield item

    def _first_message(self, topic: str):
        for connection, _, raw in self._messages({topic}):
            try:
                return self._reader.deserialize(raw, connection.msgtype)
            except Exception as error:  # noqa: BLE001
                raise BagError(f"{self.path}: cannot decode {topic}: {_one_line(error)}") from None
        return None

    def _is_depth_topic(self, topic: str) -> bool:
        """Told by the encoding of the topic's first image (16UC1/32FC1... are depth)."""
        if topic not in self._depth_topic_cache:
            msg = self._first_message(topic)
            self._depth_topic_cache[topic] = msg is not None and msg.encoding in DEPTH_ENCODINGS
        return self._depth_topic_cache[topic]

    def _choose_topics(self, asked: BagTopics) -> BagTopics:
        chosen = BagTopics(**vars(asked))
        self._check_asked_topics(chosen)
        if chosen.points is None and chosen.depth is None:
            self._choose_sensor_topic(chosen)
        if chosen.depth is not None:
            self._choose_camera_topics(chosen)
        if chosen.pose is None and not self.options.static_sensor:
            chosen.pose = self._found_pose_topic()
        if chosen.pose == POSE_FROM_TF and self.options.sensor_extrinsic is not None:
            raise BagError(
                f"{self.path}: --sensor-extrinsic applies to poses from a pose topic, but these come "
                "from /tf (which places the sensor's frame itself): drop it, or name the pose topic "
                "with --pose-topic"
            )
        return chosen

    def _check_asked_topics(self, asked: BagTopics) -> None:
        """BagError when a named topic is missing or of the wrong type, or tf is asked for and
        the bag has none."""
        self._check(asked.points, "point clouds", (POINT_CLOUD,))
        self._check(asked.depth, "depth images", (IMAGE,))
        self._check(asked.color, "colour images", (IMAGE,))
        self._check(asked.info, "camera info", (CAMERA_INFO,))
        if asked.pose != POSE_FROM_TF:
            self._check(asked.pose, "poses", POSE_TYPES)
        elif not self._of_type(TF_MESSAGE):
            raise BagError(
                f"{self.path}: poses from tf asked for, but the bag has no /tf (topics: {self._listing()})"
            )

    def _choose_sensor_topic(self, chosen: BagTopics) -> None:
        """The one depth image topic, else the one point cloud topic; BagError if not one."""
        images = self._of_type(IMAGE)
        depth = [t for t in images if self._is_depth_topic(t)]
        if len(depth) > 1:
            raise BagError(
                f"{self.path}: several depth image topics ({', '.join(depth)}): "
                "choose one with --depth-topic"
            )
        if depth:
            chosen.depth = depth[0]
            return
        clouds = self._of_type(POINT_CLOUD)
        if len(clouds) > 1:
            raise BagError(
                f"{self.path}: several point cloud topics ({', '.join(clouds)}): "
                "choose one with --points-topic"
            )
        if not clouds:
            raise BagError(
                f"{self.path}: no depth images (16UC1/32FC1) or point clouds in the bag "
                f"(topics: {self._listing()})"
            )
        chosen.points = clouds[0]

    def _choose_camera_topics(self, chosen: BagTopics) -> None:
        """The colour image and camera info topics of the depth camera, those not given."""
        if chosen.color is None:
            colours = [
                t for t in self._of_type(IMAGE) if t != chosen.depth and not self._is_depth_topic(t)
            ]
            if colours:  # the colour stream nearest the depth topic by name (same camera)
                chosen.color = max(colours, key=lambda t: (_common_prefix(t, chosen.depth), t))
        if chosen.info is None:
            infos = self._of_type(CAMERA_INFO)
            if not infos:
                raise BagError(
                    f"{self.path}: depth images need a CameraInfo topic, and the bag has none "
                    f"(topics: {self._listing()})"
                )
            chosen.info = max(infos, key=lambda t: (_common_prefix(t, chosen.depth), t))

    def _found_pose_topic(self) -> str:
        """Where poses come from when no pose topic is named; BagError if the bag has none."""
        # /tf has the chain to each message's own frame; a pose topic only that of its child frame.
        poses = self._of_type(*POSE_TYPES)
        if self._dynamic_tf():
            return POSE_FROM_TF
        if len(poses) > 1:
            raise BagError(
                f"{self.path}: several pose topics ({', '.join(poses)}) and no /tf: "
                "choose one with --pose-topic"
            )
        if poses:
            return poses[0]
        if self._of_type(TF_MESSAGE):  # /tf_static only: a sensor fixed in its tree
            return POSE_FROM_TF
        raise BagError(
            f"{self.path}: no poses in the bag (no Odometry/PoseStamped/TransformStamped topic, "
            "no /tf): record one, or pass --static-sensor if the sensor did not move"
        )

    # --- pass 1: poses and camera info ---------------------------------------------------------------
    def _load_context(self) -> None:
        if self._context_loaded:
            return
        self._context_loaded = True
        wanted = {self.topics.info}
        if self.options.static_sensor:
            pass
        elif self.topics.pose == POSE_FROM_TF:
            wanted |= {t for t in self._of_type(TF_MESSAGE)}
            self._tf = TransformTree()
        elif self.topics.pose:
            wanted.add(self.topics.pose)
            self._pose_buffer = PoseBuffer(max_age=1e12, max_size=10_000_000)  # the whole bag
        for connection, bag_time, raw in self._messages(wanted):
            try:
                msg = self._reader.deserialize(raw, connection.msgtype)
                if connection.msgtype == TF_MESSAGE:
                    self._tf.add_message(msg, static=connection.topic.endswith("_static"))
                elif connection.msgtype == CAMERA_INFO:
                    self._infos.append((self._stamp(msg, bag_time), msg))
                else:
                    if connection.msgtype.endswith("TransformStamped"):
                        matrix = matrix_from_transform_stamped(msg)
                    else:  # Odometry / PoseWithCovarianceStamped carry pose.pose, PoseStamped pose
                        matrix = matrix_from_pose_stamped(msg)
                    self._pose_buffer.add(self._stamp(msg, bag_time), matrix)
                    # PoseStamped / PoseWithCovarianceStamped do not say whose pose they are.
                    if not self._pose_child_frame:
                        self._pose_child_frame = frame_name(
                            getattr(msg, "child_frame_id", "") or ""
                        )
            except (MalformedMessage, ValueError) as error:
                self._warn(f"{connection.topic}: message skipped: {_one_line(error)}")
        self._infos.sort(key=lambda item: item[0])
        if self.topics.depth and not self._infos:
            raise BagError(f"{self.path}: the camera info topic {self.topics.info} has no messages")

    @staticmethod
    def _stamp(msg, bag_time_ns: int) -> float:
        """The header stamp; the recording time when a driver left the stamp at zero."""
        header = getattr(msg, "header", None)
        if header is not None:
            seconds = stamp_to_seconds(header.stamp)
            if seconds > 0:
                return seconds
        return bag_time_ns * 1e-9

    def _warn(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            self.log(f"warning: {text}")

    # --- pass 2: the sensor stream ----------------------------------------------------------------
    def _pose(self, stamp: float, frame_id: str) -> np.ndarray:
        if self.options.static_sensor:
            return np.eye(4)
        if self._tf is not None:
            if not frame_id:
                raise PoseLookupError("the message has no header.frame_id to look up in /tf")
            if self._fixed_frame is None:
                self._fixed_frame = self._tf.root_of(frame_id)
                self.log(f"fixed frame: {self._fixed_frame} (the root of {frame_id} in /tf)")
            return self._tf.lookup(self._fixed_frame, frame_id, stamp, self.options.pose_tolerance)
        self._check_pose_frame(frame_id)
        return self._pose_buffer.lookup(
            stamp, self.options.pose_tolerance, base_from_sensor=self._extrinsic
        )

    def _check_pose_frame(self, frame_id: str) -> None:
        """Warn (once per frame pair) when the pose topic places another frame than the sensor's."""
        child, sensor = self._pose_child_frame, frame_name(frame_id or "")
        if self._extrinsic is not None or not child or not sensor or child == sensor:
            return
        instead = (
            "take poses from /tf with --pose-topic tf"
            if self._of_type(TF_MESSAGE)
            else "record /tf and /tf_static to take poses from them"
        )
        self._warn(
            f"poses from {self.topics.pose} are of its child frame {child}, but the sensor messages are in "
            f"{sensor}: they are used as the pose of {sensor}, so the map is wrong unless the two frames "
            f"coincide; give --sensor-extrinsic (the pose of {sensor} in {child}) or {instead}"
        )

    def _camera_info(self, stamp: float):
        """The newest camera info at or before ``stamp`` (else the first one)."""
        stamps = [s for s, _ in self._infos]
        i = int(np.searchsorted(stamps, stamp, side="right")) - 1
        return self._infos[max(i, 0)][1]

    def _rgbd_frame(self, stamp: float, depth_msg, color_msg) -> SensorFrame:
        return rgbd_frame(
            depth_msg,
            self._camera_info(stamp),
            color_msg,
            pose=self._pose,
            stamp=stamp,
            on_resize=self._warn,
        )

    def _cloud_frame(self, stamp: float, msg) -> SensorFrame:
        return cloud_frame(msg, pose=self._pose, stamp=stamp)

    def _drop(
        self,
        counters: InputCounters,
        dropped: collections.Counter | None,
        inputs,
        reason: str,
        detail: str = "",
    ) -> None:
        """Count a drop on each of ``inputs``; the first of each input and reason is shown with its detail."""
        for name in inputs:
            counters.dropped(name, reason, detail)
            if dropped is not None and name in FRAME_INPUTS:
                dropped[reason] += 1
        if detail and (tuple(inputs), reason) not in self._shown:
            self._shown.add((tuple(inputs), reason))
            self.log(f"warning: {' and '.join(inputs)} dropped, {reason}: {detail}")

    def frames(
        self, dropped: collections.Counter | None = None, counters: InputCounters | None = None
    ) -> Iterator[SensorFrame]:
        """Every usable frame in bag order. Each input's messages are counted in ``counters`` as
        received and, when they cannot be used, dropped with the reason; ``dropped`` counts the
        frames (point clouds, depth images) not yielded, by reason. A yielded frame is counted as
        fused by its consumer (``replay``), or not at all."""
        counters = InputCounters() if counters is None else counters
        self._load_context()
        sensor_topics = {t for t in (self.topics.points, self.topics.depth, self.topics.color) if t}
        # (depth stamp, depth, colour) as the synchroniser decides
        paired: collections.deque = collections.deque()
        sync = self._colour_sync(paired, counters, dropped)
        names = {self.topics.points: POINTS, self.topics.depth: DEPTH, self.topics.color: COLOR}
        for connection, bag_time, raw in self._messages(sensor_topics):
            name = names[connection.topic]
            counters.received(name)
            try:
                msg = self._reader.deserialize(raw, connection.msgtype)
            except Exception as error:  # noqa: BLE001 - a corrupt record: skip it, say why
                self._drop(
                    counters,
                    dropped,
                    (name,),
                    INVALID,
                    f"cannot decode a message on {connection.topic}: {_one_line(error)}",
                )
                continue
            stamp = self._stamp(msg, bag_time)
            frame = self._sensor_frame(name, stamp, msg, sync, counters, dropped)
            if frame is not None:
                yield frame
            yield from self._paired_frames(paired, counters, dropped)
        if sync is not None:
            sync.flush()
            yield from self._paired_frames(paired, counters, dropped)

    def _colour_sync(
        self,
        paired: collections.deque,
        counters: InputCounters,
        dropped: collections.Counter | None,
    ) -> ApproximateTimeSync | None:
        """The depth and colour synchroniser, appending its pairs to ``paired`` and dropping what
        it leaves unpaired; None without a colour topic."""
        if not (self.topics.depth and self.topics.color):
            return None
        tolerance = self.options.sync_tolerance
        return ApproximateTimeSync(
            2,
            lambda d, c: paired.append((d[0], d[1], c[1])),
            slop=tolerance,
            queue_size=MAX_PENDING,
            on_drop=lambda index, why: self._drop_unpaired(
                counters, dropped, tolerance, index, why
            ),
        )

    def _drop_unpaired(
        self,
        counters: InputCounters,
        dropped: collections.Counter | None,
        tolerance: float,
        index: int,
        why: str,
    ) -> None:
        name, other = ((DEPTH, "colour"), (COLOR, "depth"))[index]
        if why == OUT_OF_ORDER:
            self._drop(counters, dropped, (name,), TOO_OLD, "not newer than the last pair")
        else:
            self._drop(
                counters,
                dropped,
                (name,),
                NO_COLOUR_PAIR,
                f"no {other} image within {tolerance:g} s (--sync-tolerance)",
            )

    def _sensor_frame(
        self,
        name: str,
        stamp: float,
        msg,
        sync: ApproximateTimeSync | None,
        counters: InputCounters,
        dropped: collections.Counter | None,
    ) -> SensorFrame | None:
        """The frame of one message, or None: dropped, or a depth or colour image handed to the
        synchroniser to wait for its partner."""
        if name == POINTS:
            return self._built(counters, dropped, (POINTS,), self._cloud_frame, stamp, msg)
        if sync is None:
            return self._built(counters, dropped, (DEPTH,), self._rgbd_frame, stamp, msg, None)
        # the stamp the pairing uses travels with the message
        sync.add(0 if name == DEPTH else 1, (stamp, msg), stamp=stamp)
        return None

    def _paired_frames(
        self,
        paired: collections.deque,
        counters: InputCounters,
        dropped: collections.Counter | None,
    ) -> Iterator[SensorFrame]:
        """The frames of the depth and colour pairs the synchroniser has made so far."""
        while paired:
            d_stamp, d_msg, c_msg = paired.popleft()
            frame = self._built(
                counters, dropped, (DEPTH, COLOR), self._rgbd_frame, d_stamp, d_msg, c_msg
            )
            if frame is not None:
                yield frame

    def _built(
        self, counters: InputCounters, dropped: collections.Counter | None, inputs, make, *args
    ) -> SensorFrame | None:
        """``make(*args)``, or None with the drop counted on ``inputs`` and the reason shown."""
        try:
            return make(*args)
        except PoseLookupError as error:
            self._drop(counters, dropped, inputs, NO_POSE, self._no_pose_detail(error))
        except (MalformedMessage, ValueError) as error:
            self._drop(counters, dropped, inputs, INVALID, _one_line(error))
        return None

    def _no_pose_detail(self, error: PoseLookupError) -> str:
        detail = _one_line(error)
        if self._tf is not None:
            poses = self._of_type(*POSE_TYPES)
            if poses:
                detail += f" (or take poses from {poses[0]} with --pose-topic {poses[0]})"
        return detail

    def replay(self, pipeline, log=None) -> ReplaySummary:
        """Feed every frame to ``pipeline`` (a PerceptionPipeline); returns what went in."""
        from sole_ros.scene import InvalidInput

        summary = ReplaySummary(self.topics, self.pose_source)
        counters = summary.counters
        for frame in self.frames(counters=counters):
            inputs = frame.inputs
            try:
                fuse(pipeline, frame)
            except InvalidInput as error:
                self._drop(counters, None, inputs, REJECTED, _one_line(error))
                continue
            for name in inputs:
                counters.fused(name)
            if self.options.max_frames is not None and summary.frames >= self.options.max_frames:
                break
        if log is not None:
            log(summary.describe())
        return summary


__all__ = [
    "BagReplay",
    "BagTopics",
    "ReplayOptions",
    "ReplaySummary",
    "SensorFrame",
    "BagError",
    "POSE_FROM_TF",
    "POSE_TYPES",
]
