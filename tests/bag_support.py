"""Writing ROS 2 bags for the replay tests with the rosbags library (no ROS needed).

The messages are built field by field here, not with the code under test, so an encoding or
layout mistake in sole_ros.messages cannot cancel itself out.
"""

from __future__ import annotations

import pathlib

import numpy as np
from scipy.spatial.transform import Rotation

CAMERA_FRAME = "camera_color_optical_frame"


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _stamp(ts, seconds: float):
    Time = ts.types["builtin_interfaces/msg/Time"]
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(ts, seconds: float, frame_id: str):
    return ts.types["std_msgs/msg/Header"](stamp=_stamp(ts, seconds), frame_id=frame_id)


def depth_image(
    ts, seconds: float, depth_m: np.ndarray, millimetres: bool = True, frame_id: str = CAMERA_FRAME
):
    """16UC1 millimetres (0 = no reading), as RealSense/Kinect drivers publish, or 32FC1 metres.
    A uint16 ``depth_m`` is taken as millimetres already."""
    Image = ts.types["sensor_msgs/msg/Image"]
    if depth_m.dtype == np.uint16:
        values = depth_m.astype("<u2")
        encoding = "16UC1"
    elif millimetres:
        values = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000), 0).astype(
            "<u2"
        )
        encoding = "16UC1"
    else:
        values = depth_m.astype("<f4")
        encoding = "32FC1"
    h, w = depth_m.shape
    return Image(
        header=_header(ts, seconds, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * values.itemsize,
        data=np.frombuffer(values.tobytes(), np.uint8),
    )


def color_image(
    ts, seconds: float, rgb: np.ndarray, encoding: str = "bgr8", frame_id: str = CAMERA_FRAME
):
    """bgr8 by default, the encoding most camera drivers publish (the decoder must swap the
    channels), or rgb8."""
    Image = ts.types["sensor_msgs/msg/Image"]
    h, w, _ = rgb.shape
    pixels = {"bgr8": rgb[:, :, ::-1], "rgb8": rgb}[encoding]
    return Image(
        header=_header(ts, seconds, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * 3,
        data=np.frombuffer(np.ascontiguousarray(pixels).tobytes(), np.uint8),
    )


def camera_info(ts, seconds: float, K: np.ndarray, width: int, height: int):
    CameraInfo = ts.types["sensor_msgs/msg/CameraInfo"]
    RegionOfInterest = ts.types["sensor_msgs/msg/RegionOfInterest"]
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(
        header=_header(ts, seconds, CAMERA_FRAME),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.asarray(K, float).reshape(9),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def odometry(
    ts, seconds: float, pose: np.ndarray, frame_id: str = "map", child_frame_id: str = CAMERA_FRAME
):
    """nav_msgs/Odometry whose pose is ``child_frame_id``'s (by default the camera's optical frame)."""
    t = ts.types
    x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
    pose_msg = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](
            x=float(pose[0, 3]), y=float(pose[1, 3]), z=float(pose[2, 3])
        ),
        orientation=t["geometry_msgs/msg/Quaternion"](
            x=float(x), y=float(y), z=float(z), w=float(w)
        ),
    )
    zero = t["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    return t["nav_msgs/msg/Odometry"](
        header=_header(ts, seconds, frame_id),
        child_frame_id=child_frame_id,
        pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose_msg, covariance=np.zeros(36)),
        twist=t["geometry_msgs/msg/TwistWithCovariance"](
            twist=t["geometry_msgs/msg/Twist"](linear=zero, angular=zero), covariance=np.zeros(36)
        ),
    )


# base_link -> camera optical frame on a robot: 0.2 m forward, 0.5 m up, optical axes (z forward).
BASE_FROM_CAMERA = np.array(
    [[0.0, 0.0, 1.0, 0.2], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.5], [0, 0, 0, 1.0]]
)


def transform_stamped(ts, seconds: float, parent: str, child: str, matrix: np.ndarray):
    t = ts.types
    x, y, z, w = Rotation.from_matrix(matrix[:3, :3]).as_quat()
    return t["geometry_msgs/msg/TransformStamped"](
        header=_header(ts, seconds, parent),
        child_frame_id=child,
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](
                x=float(matrix[0, 3]), y=float(matrix[1, 3]), z=float(matrix[2, 3])
            ),
            rotation=t["geometry_msgs/msg/Quaternion"](
                x=float(x), y=float(y), z=float(z), w=float(w)
            ),
        ),
    )


def tf_message(ts, transforms):
    return ts.types["tf2_msgs/msg/TFMessage"](transforms=list(transforms))


def organised_cloud(ts, seconds: float, depth_m: np.ndarray, K: np.ndarray, rgb: np.ndarray):
    """An organised PointCloud2 (x, y, z float32, packed rgb float32, 4 bytes padding per point),
    NaN where the depth has no reading, as depth_image_proc publishes it."""
    h, w = depth_m.shape
    v, u = np.mgrid[0:h, 0:w]
    z = np.where(depth_m > 0, depth_m, np.nan)
    x, y = (u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z
    table = np.zeros(
        h * w, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "<u4"), ("rgb", "<u4")]
    )
    table["x"], table["y"], table["z"] = x.reshape(-1), y.reshape(-1), z.reshape(-1)
    c = rgb.reshape(-1, 3).astype(np.uint32)
    table["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    PointField = ts.types["sensor_msgs/msg/PointField"]
    fields = [
        PointField(name=n, offset=o, datatype=d, count=1)
        for n, o, d in (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 16, 7))
    ]
    return ts.types["sensor_msgs/msg/PointCloud2"](
        header=_header(ts, seconds, CAMERA_FRAME),
        height=h,
        width=w,
        fields=fields,
        is_bigendian=False,
        point_step=20,
        row_step=20 * w,
        data=np.frombuffer(table.tobytes(), np.uint8),
        is_dense=False,
    )


def write_cloud_tf_bag(path: pathlib.Path, frames, start: float = 100.0) -> pathlib.Path:
    """Point clouds in the camera's optical frame on /camera/depth/points, poses only on /tf
    (map -> odom static, odom -> base_link per frame) and /tf_static (base_link -> camera)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cloud_c = writer.add_connection(
            "/camera/depth/points", "sensor_msgs/msg/PointCloud2", typestore=ts
        )
        tf_c = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=ts)
        static_c = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=ts)
        odom_from_map = np.eye(4)
        odom_from_map[:3, 3] = [0.5, -0.25, 0.0]
        statics = [
            transform_stamped(ts, start, "map", "odom", np.linalg.inv(odom_from_map)),
            transform_stamped(ts, start, "base_link", CAMERA_FRAME, BASE_FROM_CAMERA),
        ]
        writer.write(
            static_c,
            int(start * 1e9),
            ts.serialize_cdr(tf_message(ts, statics), "tf2_msgs/msg/TFMessage"),
        )
        for frame in frames:
            t = start + frame.stamp
            # odom_from_base such that map_from_camera = frame.pose
            odom_from_base = odom_from_map @ frame.pose @ np.linalg.inv(BASE_FROM_CAMERA)
            writer.write(
                cloud_c,
                int(t * 1e9),
                ts.serialize_cdr(
                    organised_cloud(ts, t, frame.depth, frame.K, frame.color),
                    "sensor_msgs/msg/PointCloud2",
                ),
            )
            writer.write(
                tf_c,
                int((t + 0.01) * 1e9),
                ts.serialize_cdr(
                    tf_message(ts, [transform_stamped(ts, t, "odom", "base_link", odom_from_base)]),
                    "tf2_msgs/msg/TFMessage",
                ),
            )
    return path


def write_rgbd_bag(
    path: pathlib.Path, frames, storage: str = "mcap", start: float = 100.0
) -> pathlib.Path:
    """A bag of synthetic frames: /camera/depth/image_raw (16UC1), /camera/color/image_raw (bgr8),
    /camera/color/camera_info, /odom (nav_msgs/Odometry of the camera) and an unrelated /notes."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    frames = list(frames)
    with Writer(path, version=9, storage_plugin=plugin) as writer:

        def connection(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=ts)

        depth_c, color_c, info_c = _camera_connections(connection)
        odom_c = connection("/odom", "nav_msgs/msg/Odometry")
        note_c = connection("/notes", "std_msgs/msg/String")
        writer.write(
            note_c,
            int(start * 1e9),
            ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="start"), "std_msgs/msg/String"),
        )
        for i, frame in enumerate(frames):
            t = start + frame.stamp
            h, w = frame.depth.shape
            for conn, msg in (
                (info_c, camera_info(ts, t, frame.K, w, h)),
                (depth_c, depth_image(ts, t, frame.depth)),
                (color_c, color_image(ts, t + 0.004, frame.color)),
            ):  # colour 4 ms later
                writer.write(conn, int((t + 0.005) * 1e9), ts.serialize_cdr(msg, conn.msgtype))
            # Odometry recorded after the images it belongs to (a slower transport), at the frame's
            # stamp and halfway to the next frame: the replay must look poses up by stamp.
            odom_stamps = [frame.stamp] + (
                [(frame.stamp + frames[i + 1].stamp) / 2] if i + 1 < len(frames) else []
            )
            for s in odom_stamps:
                msg = odometry(ts, start + s, _interpolated_pose(frames, s))
                writer.write(
                    odom_c, int((t + 0.02) * 1e9), ts.serialize_cdr(msg, "nav_msgs/msg/Odometry")
                )
    return path


def _camera_connections(connection):
    """The depth, colour and camera info topics of an RGB-D driver, as these bags name them."""
    return (
        connection("/camera/depth/image_raw", "sensor_msgs/msg/Image"),
        connection("/camera/color/image_raw", "sensor_msgs/msg/Image"),
        connection("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
    )


def _interpolated_pose(frames, stamp: float) -> np.ndarray:
    """The trajectory at any time: linear between the frames' poses (slerp for rotation)."""
    from scipy.spatial.transform import Slerp

    stamps = np.array([f.stamp for f in frames])
    stamp = float(np.clip(stamp, stamps[0], stamps[-1]))
    i = (
        int(np.clip(np.searchsorted(stamps, stamp) - 1, 0, len(frames) - 2))
        if len(frames) > 1
        else 0
    )
    if len(frames) == 1:
        return frames[0].pose
    a, b = frames[i], frames[i + 1]
    alpha = (stamp - a.stamp) / (b.stamp - a.stamp)
    pose = np.eye(4)
    pose[:3, :3] = Slerp([0, 1], Rotation.from_matrix([a.pose[:3, :3], b.pose[:3, :3]]))(
        [alpha]
    ).as_matrix()[0]
    pose[:3, 3] = (1 - alpha) * a.pose[:3, 3] + alpha * b.pose[:3, 3]
    return pose


def write_tf_rgbd_bag(
    path: pathlib.Path,
    playback,
    dynamic_of,
    static: dict,
    odometry_of=None,
    color_offset: float = 0.0,
    storage: str = "mcap",
) -> pathlib.Path:
    """RGB-D frames with their poses on /tf (+ /tf_static), as a robot records them.

    ``playback``: (stamp, frame) pairs; a frame has ``depth_mm`` (uint16), ``rgb`` and ``K``.
    ``dynamic_of(frame)``: {(parent, child): parent_from_child} published on /tf at each stamp;
    ``static``: the same, published once on /tf_static. ``odometry_of(frame)``: optional
    (child_frame_id, fixed_from_child) published on /odom (nav_msgs/Odometry) at each stamp.
    Depth is 16UC1 on /camera/depth/image_raw, colour rgb8 on /camera/color/image_raw (stamped
    ``color_offset`` seconds after its depth image), CameraInfo on /camera/color/camera_info."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    playback = list(playback)
    tf_type = "tf2_msgs/msg/TFMessage"

    def transforms(seconds, links):
        return tf_message(
            ts,
            [
                transform_stamped(ts, seconds, parent, child, matrix)
                for (parent, child), matrix in links.items()
            ],
        )

    with Writer(path, version=9, storage_plugin=plugin) as writer:

        def connection(topic, msgtype):
            return writer.add_connection(topic, msgtype, typestore=ts)

        depth_c, color_c, info_c = _camera_connections(connection)
        tf_c = connection("/tf", tf_type)
        static_c = connection("/tf_static", tf_type)
        odom_c = connection("/odom", "nav_msgs/msg/Odometry") if odometry_of is not None else None
        first = playback[0][0] if playback else 0.0
        writer.write(
            static_c, int(first * 1e9), ts.serialize_cdr(transforms(first, static), tf_type)
        )
        for stamp, frame in playback:
            h, w = frame.depth_mm.shape
            ns = int(round(stamp * 1e9))
            writer.write(tf_c, ns, ts.serialize_cdr(transforms(stamp, dynamic_of(frame)), tf_type))
            if odom_c is not None:
                child, pose = odometry_of(frame)
                writer.write(
                    odom_c,
                    ns,
                    ts.serialize_cdr(
                        odometry(ts, stamp, pose, child_frame_id=child), odom_c.msgtype
                    ),
                )
            for conn, msg in (
                (info_c, camera_info(ts, stamp, frame.K, w, h)),
                (depth_c, depth_image(ts, stamp, frame.depth_mm)),
                (color_c, color_image(ts, stamp + color_offset, frame.rgb, "rgb8")),
            ):
                writer.write(conn, ns + 5_000_000, ts.serialize_cdr(msg, conn.msgtype))
    return path
