"""sensor_msgs/Image and CameraInfo <-> numpy: depth in metres, colour as RGB, intrinsics K.

The decoding, the encoders and the encoding table are ROS-free (sole_ros.messages.images, shared
with the bag replay); this module is where the ROS layer imports them from.
"""

from sole_ros.messages.images import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    MalformedMessage,
    camera_matrix,
    color_image_fields,
    color_to_rgb,
    depth_image_fields,
    depth_to_metres,
)

__all__ = [
    "MalformedMessage",
    "depth_to_metres",
    "color_to_rgb",
    "camera_matrix",
    "depth_image_fields",
    "color_image_fields",
    "DEPTH_ENCODINGS",
    "COLOR_ENCODINGS",
]
