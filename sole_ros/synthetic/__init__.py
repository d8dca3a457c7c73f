"""Procedural synthetic scenes for tests, demos and training: tabletop and room scenes of named
object classes, labelled point clouds, and Kinect-like RGB-D sequences with ground truth.

    scene = generate_scene(seed=3, kind="room")
    cloud = sample_point_cloud(scene)             # points, colours, instance and class ids
    for frame in render_sequence(scene, 20):      # colour, depth, K, pose, instance masks
        ...
"""

from sole_ros.synthetic.camera import kinect_intrinsics, look_at, orbit_trajectory
from sole_ros.synthetic.catalogue import (
    CLASS_IDS,
    CLASS_NAMES,
    COLOURS,
    FURNITURE_CLASSES,
    SMALL_OBJECT_CLASSES,
)
from sole_ros.synthetic.point_cloud import (
    LabelledPointCloud,
    backproject,
    fuse_frames,
    sample_point_cloud,
)
from sole_ros.synthetic.render import (
    Frame,
    cast_rays,
    default_trajectory,
    render_frame,
    render_sequence,
)
from sole_ros.synthetic.scene import (
    BACKGROUND_CLASS,
    BACKGROUND_INSTANCE,
    Scene,
    SceneObject,
    generate_scene,
)
from sole_ros.synthetic.sensor_noise import KinectNoise

__all__ = [
    "BACKGROUND_CLASS",
    "BACKGROUND_INSTANCE",
    "CLASS_IDS",
    "CLASS_NAMES",
    "COLOURS",
    "FURNITURE_CLASSES",
    "Frame",
    "KinectNoise",
    "LabelledPointCloud",
    "SMALL_OBJECT_CLASSES",
    "Scene",
    "SceneObject",
    "backproject",
    "cast_rays",
    "default_trajectory",
    "fuse_frames",
    "generate_scene",
    "kinect_intrinsics",
    "look_at",
    "orbit_trajectory",
    "render_frame",
    "render_sequence",
    "sample_point_cloud",
]
