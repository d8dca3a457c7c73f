"""A camera driver stand-in for the node tests: plays the real Redwood RGB-D frames over ROS 2.

Run as its own process. It publishes what an RGB-D driver and a robot's TF publish:
640x480 16UC1 depth and rgb8 colour (both in camera_color_optical_frame, registered), CameraInfo,
the dynamic links map->odom->base_link on /tf and the static base_link->camera_link->optical
links on /tf_static (latched), with the reliability asked for (drivers differ: realsense2_camera
and most others default to reliable for images, some to best effort / sensor data).

    python tests/redwood_player.py --reliability best_effort --repeats 3 --namespace /robot1
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from redwood_support import OPTICAL, load_redwood, stream, tf_chain  # noqa: E402


def _transform(stamp, parent: str, child: str, matrix: np.ndarray):
    from geometry_msgs.msg import TransformStamped
    from scipy.spatial.transform import Rotation

    t = TransformStamped()
    t.header.stamp, t.header.frame_id, t.child_frame_id = stamp, parent, child
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = map(
        float, matrix[:3, 3]
    )
    x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    (
        t.transform.rotation.x,
        t.transform.rotation.y,
        t.transform.rotation.z,
        t.transform.rotation.w,
    ) = x, y, z, w
    return t


def _settled(node, publisher, reliability) -> bool:
    """Some subscriber of the publisher's topic, and every one with our reliability."""
    subscribers = node.get_subscriptions_info_by_topic(publisher.topic_name)
    return bool(subscribers) and all(s.qos_profile.reliability == reliability for s in subscribers)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--repeats", type=int, default=2, help="times the five frames are played")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument(
        "--namespace", default="/", help="where the camera topics go (the node's namespace)"
    )
    parser.add_argument(
        "--wait-subscribers",
        type=float,
        default=30.0,
        help="seconds to wait for a depth subscriber before playing",
    )
    parser.add_argument("--no-tf", action="store_true", help="publish no transforms (a missing TF)")
    parser.add_argument("--no-camera-info", action="store_true")
    parser.add_argument(
        "--color-offset", type=float, default=0.0, help="seconds added to colour stamps"
    )
    parser.add_argument("--start", type=float, default=0.0, help="first stamp (s); 0: now")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from sole_ros.ros.transforms import seconds_to_stamp

    rclpy.init()
    node = rclpy.create_node("redwood_camera", namespace=args.namespace)
    reliability = (
        ReliabilityPolicy.RELIABLE
        if args.reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT
    )
    # History 10: rclcpp's default depth, which image_transport publishers and most drivers keep.
    sensor_qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
    depth_pub = node.create_publisher(Image, "depth/image", sensor_qos)
    color_pub = node.create_publisher(Image, "color/image", sensor_qos)
    info_pub = node.create_publisher(CameraInfo, "depth/camera_info", sensor_qos)
    tf_pub = node.create_publisher(
        TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    static_pub = node.create_publisher(
        TFMessage,
        "/tf_static",
        QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        ),
    )

    frames = load_redwood()
    # Like a driver that was already running: play once the node's subscriptions have settled on
    # our offer (inputs.qos auto re-subscribes when it sees publishers).
    deadline = time.monotonic() + args.wait_subscribers
    tf_pubs = () if args.no_tf else (tf_pub, static_pub)
    while time.monotonic() < deadline and not (
        all(_settled(node, publisher, reliability) for publisher in (depth_pub, color_pub))
        and all(
            publisher.get_subscription_count() > 0
            for publisher in (depth_pub, color_pub, info_pub, *tf_pubs)
        )
    ):
        time.sleep(0.05)
    time.sleep(2.0)  # a driver that has been running: both sides have matched each other
    start = args.start or time.time()
    if not args.no_tf:
        _, static = tf_chain(frames[0].world_from_camera)
        stamp0 = seconds_to_stamp(start)
        static_pub.publish(
            TFMessage(transforms=[_transform(stamp0, p, c, m) for (p, c), m in static.items()])
        )
    published = 0
    next_time = time.monotonic()
    for stamp_s, frame in stream(frames, args.repeats, start=start, rate=args.rate):
        stamp = seconds_to_stamp(stamp_s)
        if not args.no_tf:
            dynamic, _ = tf_chain(frame.world_from_camera)
            tf_pub.publish(
                TFMessage(transforms=[_transform(stamp, p, c, m) for (p, c), m in dynamic.items()])
            )
        height, width = frame.depth_mm.shape
        depth = Image(
            height=height,
            width=width,
            encoding="16UC1",
            is_bigendian=0,
            step=width * 2,
            data=frame.depth_mm.astype("<u2").tobytes(),
        )
        depth.header.stamp, depth.header.frame_id = stamp, OPTICAL
        color = Image(
            height=height,
            width=width,
            encoding="rgb8",
            is_bigendian=0,
            step=width * 3,
            data=np.ascontiguousarray(frame.rgb).tobytes(),
        )
        color.header.stamp, color.header.frame_id = (
            seconds_to_stamp(stamp_s + args.color_offset),
            OPTICAL,
        )
        if not args.no_camera_info:
            info = CameraInfo(height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5)
            info.k = [float(v) for v in frame.K.reshape(-1)]
            info.p = [
                float(frame.K[0, 0]),
                0.0,
                float(frame.K[0, 2]),
                0.0,
                0.0,
                float(frame.K[1, 1]),
                float(frame.K[1, 2]),
                0.0,
                0.0,
                0.0,
                1.0,
                0.0,
            ]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.header.stamp, info.header.frame_id = stamp, OPTICAL
            info_pub.publish(info)
        depth_pub.publish(depth)
        color_pub.publish(color)
        if not args.no_tf:
            # Again after the images, as a robot's TF (published faster than the camera) would be:
            # a transform sample crowded out by the image burst is not the only one of its stamp.
            tf_pub.publish(
                TFMessage(transforms=[_transform(stamp, p, c, m) for (p, c), m in dynamic.items()])
            )
        published += 1
        next_time += 1.0 / args.rate
        time.sleep(max(0.0, next_time - time.monotonic()))
    # A robot keeps publishing TF after the camera stops (here: standing still at the last pose).
    # Besides, a reliable reader learns of a lost sample only from later traffic or a heartbeat
    # seconds away: without it the last frames' transforms could be missing for good.
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        stamp_s += 1.0 / args.rate
        if not args.no_tf:
            stamp = seconds_to_stamp(stamp_s)
            tf_pub.publish(
                TFMessage(transforms=[_transform(stamp, p, c, m) for (p, c), m in dynamic.items()])
            )
        time.sleep(1.0 / args.rate)
    # A reliable writer's unacknowledged samples die with its process: let the readers have them.
    for publisher in (depth_pub, color_pub, info_pub, tf_pub):
        publisher.wait_for_all_acked(Duration(seconds=10))
    print(f"published {published} frames ({args.reliability})", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
