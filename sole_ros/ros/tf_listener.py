"""Sensor poses from /tf and /tf_static: through tf2_ros where installed, else the package's own tree.

Both give ``lookup(target, source, stamp, timeout) -> target_from_source`` (4x4): the whole chain
between the two frames at the stamp, each dynamic link interpolated, waiting up to ``timeout``
seconds for the transforms of that stamp to arrive, PoseLookupError with the reason otherwise.

The PyPI install has neither tf2_ros nor tf2_msgs; scripts/setup.sh then builds the standard
tf2_msgs/msg/TFMessage interface from its identical one-line definition, so these subscriptions
match every other node's /tf on the wire, and the transforms go into
sole_ros.messages.transform_tree.TransformTree, the same tree the bag replay uses.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sole_ros.messages.poses import PoseLookupError, matrix_from_transform, stamp_to_seconds
from sole_ros.messages.transform_tree import TransformTree

# /tf is read best effort (it matches reliable broadcasters too): a lost transform is superseded
# by the next one and interpolation spans the gap, whereas a reliable reader delivers in order and
# holds every later transform back until the lost one is resent, which can take seconds while
# image bursts crowd the host. /tf_static stays reliable and latched, as tf2_ros reads it.
DYNAMIC_QOS = QoSProfile(
    depth=100,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
STATIC_QOS = QoSProfile(
    depth=100,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
CACHE_SECONDS = 10.0  # how much /tf history is kept, as tf2's default buffer


def tf2_ros_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return False
    return True


def tf_messages_available() -> bool:
    try:
        from tf2_msgs.msg import TFMessage  # noqa: F401
    except ImportError:
        return False
    return True


def _ros_arguments() -> list[str]:
    """This process's command line without node-name remaps (they name the main node only)."""
    import sys

    return [arg for arg in sys.argv if not arg.startswith(("__node:=", "__name:="))]


class OwnTransformListener:
    """/tf and /tf_static into a TransformTree, looked up with waiting; no tf2_ros needed.

    The subscriptions live on a small node of their own, spun by a thread of their own (as
    tf2_ros's spin_thread): a busy sensor callback in the main executor must never delay the
    transforms it is waiting for.
    """

    backend = "sole_ros transform tree"

    def __init__(self, node, cache_seconds: float = CACHE_SECONDS):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from tf2_msgs.msg import TFMessage

        self._tree = TransformTree(max_age=cache_seconds)
        self._arrived = threading.Condition()
        # A context (so a DDS participant, with its own sockets) of its own: a burst of image
        # fragments to the node's participant overflows its receive buffer and takes small /tf
        # samples down with it, which a reliable writer resends only seconds later. The
        # process's remappings (e.g. /tf:=tf) are given to it too.
        self._context = rclpy.Context()
        rclpy.init(args=_ros_arguments(), context=self._context)
        self._node = rclpy.create_node(
            f"{node.get_name()}_transforms", namespace=node.get_namespace(), context=self._context
        )
        self._node.create_subscription(
            TFMessage, "/tf", lambda msg: self._add(msg, False), DYNAMIC_QOS
        )
        self._node.create_subscription(
            TFMessage, "/tf_static", lambda msg: self._add(msg, True), STATIC_QOS
        )
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="sole-transforms", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except Exception as error:  # noqa: BLE001 - say why poses stop, then stop
                if not self._stop.is_set():
                    self._node.get_logger().error(f"transform listener stopped: {error}")
                return

    def _add(self, msg, static: bool) -> None:
        with self._arrived:
            for t in msg.transforms:
                # One bad transform must not spoil the others of the message.
                try:
                    self._tree.add(
                        t.header.frame_id,
                        t.child_frame_id,
                        stamp_to_seconds(t.header.stamp),
                        matrix_from_transform(t.transform),
                        static=static,
                    )
                except (ValueError, PoseLookupError) as error:
                    self._node.get_logger().warning(
                        f"transform {t.header.frame_id} -> {t.child_frame_id} ignored: {error}",
                        throttle_duration_sec=5.0,
                    )
            self._arrived.notify_all()

    def lookup(self, target: str, source: str, stamp: float, timeout: float) -> np.ndarray:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                try:
                    # No extrapolation: a stamp past the newest transform waits for the next one.
                    return self._tree.lookup(target, source, stamp, tolerance=0.0)
                except PoseLookupError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._arrived.wait(timeout=remaining)

    def destroy(self, node) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._executor.shutdown()
        self._node.destroy_node()
        self._context.try_shutdown()


class Tf2RosListener:
    """The same lookups through tf2_ros (a full ROS 2 install)."""

    backend = "tf2_ros"

    def __init__(self, node):
        import tf2_ros

        self._buffer = tf2_ros.Buffer()
        self._listener = tf2_ros.TransformListener(self._buffer, node)

    def lookup(self, target: str, source: str, stamp: float, timeout: float) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            transform = self._buffer.lookup_transform(
                target,
                source,
                Time(nanoseconds=round(stamp * 1e9)),
                timeout=Duration(seconds=timeout),
            )
        except Exception as error:  # noqa: BLE001 - tf2 raises several lookup exception types
            raise PoseLookupError(str(error)) from None
        return matrix_from_transform(transform.transform)

    def destroy(self, node) -> None:
        self._listener.unregister()


def make_transform_listener(node):
    """tf2_ros where it is installed, else the package's own listener (needs tf2_msgs)."""
    if tf2_ros_available():
        return Tf2RosListener(node)
    if not tf_messages_available():
        raise ImportError(
            "pose.source=tf needs tf2_msgs: run scripts/setup.sh (it builds the standard "
            "tf2_msgs/msg/TFMessage interface), or install ROS 2's tf2_msgs"
        )
    return OwnTransformListener(node)


__all__ = [
    "OwnTransformListener",
    "Tf2RosListener",
    "make_transform_listener",
    "tf2_ros_available",
    "tf_messages_available",
]
