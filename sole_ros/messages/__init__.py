"""Decoding of ROS message contents into numpy, without ROS.

Everything here is duck-typed on the messages' field names, so the same code decodes the messages
rclpy delivers (sole_ros.ros re-exports these functions) and the dataclasses rosbags deserialises
from a bag file. No module here imports rclpy or a ROS message package.

    from sole_ros.messages import read_points, depth_to_metres, color_to_rgb, camera_matrix

What comes in as sensor messages becomes a frame here (frames.py: one builder for node and bag),
with one encoding table (images.py) and one pairing rule for depth and colour (sync.py).
"""

from sole_ros.messages.errors import MalformedMessage, message_bytes
from sole_ros.messages.frames import (
    SensorFrame,
    cloud_frame,
    fuse,
    match_color_to_depth,
    rgbd_frame,
)
from sole_ros.messages.images import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    camera_matrix,
    color_image_fields,
    color_to_rgb,
    depth_image_fields,
    depth_to_metres,
)
from sole_ros.messages.pointcloud import POINT_FIELD_DTYPES, PointFieldType, read_points
from sole_ros.messages.poses import (
    POSE_END_TOLERANCE,
    PoseBuffer,
    PoseLookupError,
    check_rigid,
    extrinsic_matrix,
    matrix_from_odometry,
    matrix_from_pose,
    matrix_from_pose_stamped,
    matrix_from_transform,
    matrix_from_transform_stamped,
    pose_to_matrix,
    stamp_to_seconds,
)
from sole_ros.messages.sync import OUT_OF_ORDER, UNMATCHED, ApproximateTimeSync

__all__ = [
    "MalformedMessage",
    "message_bytes",
    "read_points",
    "POINT_FIELD_DTYPES",
    "PointFieldType",
    "depth_to_metres",
    "color_to_rgb",
    "camera_matrix",
    "DEPTH_ENCODINGS",
    "COLOR_ENCODINGS",
    "depth_image_fields",
    "color_image_fields",
    "SensorFrame",
    "rgbd_frame",
    "cloud_frame",
    "fuse",
    "match_color_to_depth",
    "ApproximateTimeSync",
    "UNMATCHED",
    "OUT_OF_ORDER",
    "POSE_END_TOLERANCE",
    "PoseBuffer",
    "PoseLookupError",
    "stamp_to_seconds",
    "pose_to_matrix",
    "matrix_from_pose",
    "matrix_from_transform",
    "matrix_from_odometry",
    "matrix_from_pose_stamped",
    "matrix_from_transform_stamped",
    "extrinsic_matrix",
    "check_rigid",
]
