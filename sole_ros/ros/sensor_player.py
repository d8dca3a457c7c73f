"""A sensor player: publishes a synthetic RGB-D sequence with poses, as a robot's camera would.

Topics (relative, remappable): ``depth/image`` (16UC1, mm), ``depth/camera_info``,
``color/image`` (rgb8), ``pose`` (nav_msgs/Odometry of the camera in the fixed frame). Used by the
demo and the node tests; also runnable on its own:

    python -m sole_ros.ros.sensor_player --seed 3 --frames 12 --rate 5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sole_ros.ros.images import color_image_fields, depth_image_fields
from sole_ros.ros.transforms import seconds_to_stamp

DEPTH_ENCODING = "16UC1"  # millimetres, 0 = no reading: the common driver output
COLOR_ENCODING = "rgb8"


def depth_image(header: Header, depth_m: np.ndarray, encoding: str = DEPTH_ENCODING) -> Image:
    """Depth in any encoding of the package's table (default 16UC1 millimetres)."""
    return Image(header=header, **depth_image_fields(depth_m, encoding))


def color_image(header: Header, rgb: np.ndarray, encoding: str = COLOR_ENCODING) -> Image:
    return Image(header=header, **color_image_fields(rgb, encoding))


def camera_info(header: Header, K: np.ndarray, width: int, height: int) -> CameraInfo:
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    info.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(9)]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    P = np.zeros((3, 4))
    P[:3, :3] = K
    info.p = [float(v) for v in P.reshape(12)]
    return info


def odometry(header: Header, child_frame: str, pose: np.ndarray) -> Odometry:
    msg = Odometry(header=header, child_frame_id=child_frame)
    p = msg.pose.pose
    p.position.x, p.position.y, p.position.z = map(float, pose[:3, 3])
    x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = map(float, (x, y, z, w))
    return msg


class SensorPlayer(Node):
    """Publishes pre-rendered frames; ``publish_frame(i)`` sends frame i with a stamp."""

    def __init__(
        self,
        frames,
        fixed_frame: str = "map",
        camera_frame: str = "camera",
        reliable: bool = True,
        name: str = "sole_sensor_player",
        **kwargs,
    ):
        super().__init__(name, **kwargs)
        self.frames = list(frames)
        self.fixed_frame, self.camera_frame = fixed_frame, camera_frame
        qos = QoSProfile(
            depth=10,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        self.depth_pub = self.create_publisher(Image, "depth/image", qos)
        self.info_pub = self.create_publisher(CameraInfo, "depth/camera_info", qos)
        self.color_pub = self.create_publisher(Image, "color/image", qos)
        self.pose_pub = self.create_publisher(Odometry, "pose", qos)
        self.start = time.time()

    def stamp_of(self, index: int) -> float:
        return self.start + self.frames[index].stamp

    def publish_frame(self, index: int) -> float:
        """Send frame ``index`` (pose first, so the node can look it up); returns its stamp."""
        frame = self.frames[index]
        stamp = self.stamp_of(index)
        camera = Header(frame_id=self.camera_frame, stamp=seconds_to_stamp(stamp))
        world = Header(frame_id=self.fixed_frame, stamp=camera.stamp)
        height, width = frame.depth.shape
        self.pose_pub.publish(odometry(world, self.camera_frame, frame.pose))
        self.info_pub.publish(camera_info(camera, frame.K, width, height))
        self.color_pub.publish(color_image(camera, frame.color))
        self.depth_pub.publish(depth_image(camera, frame.depth))
        return stamp

    def wait_for_subscribers(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        pubs = (self.depth_pub, self.info_pub, self.color_pub, self.pose_pub)
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.1)
        return False


def render_demo_frames(
    seed: int,
    num_frames: int,
    width: int = 320,
    height: int = 240,
    kind: str = "tabletop",
    classes: list[str] | None = None,
    object_sizes: str = "compact",
):
    from sole_ros.synthetic import generate_scene, render_sequence

    scene = generate_scene(seed=seed, kind=kind, classes=classes, sizes=object_sizes)
    return scene, list(render_sequence(scene, num_frames, width=width, height=height, seed=seed))


def main(argv=None) -> int:
    from sole_ros.synthetic.catalogue import OBJECT_SIZES

    parser = argparse.ArgumentParser(
        description="Publish a synthetic RGB-D sequence with poses over ROS 2."
    )
    parser.add_argument("--seed", type=int, default=3, help="scene seed (default 3)")
    parser.add_argument("--frames", type=int, default=12, help="frames to render and publish")
    parser.add_argument("--rate", type=float, default=5.0, help="frames per second")
    parser.add_argument("--loop", action="store_true", help="start over at the end")
    parser.add_argument(
        "--object-sizes",
        choices=tuple(OBJECT_SIZES),
        default="compact",
        help="the small objects' size ranges (default compact)",
    )
    args, ros_args = parser.parse_known_args(argv)
    if args.frames < 1 or args.rate <= 0:
        print("sensor_player: error: --frames must be >= 1 and --rate > 0", file=sys.stderr)
        return 2
    _, frames = render_demo_frames(args.seed, args.frames, object_sizes=args.object_sizes)
    rclpy.init(args=ros_args)
    player = SensorPlayer(frames)
    try:
        player.wait_for_subscribers(timeout=30.0)
        while True:
            for i in range(len(frames)):
                player.publish_frame(i)
                rclpy.spin_once(player, timeout_sec=1.0 / args.rate)
            if not args.loop:
                break
    except KeyboardInterrupt:
        pass
    finally:
        player.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
