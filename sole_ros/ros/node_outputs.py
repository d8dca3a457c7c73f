"""sole_node's published answers, latched for RViz: ~/instances, ~/markers, ~/scene, ~/objects.

~/instances and ~/markers: the latest answer (or the full segmentation with
output.full_segmentation), a cloud with instance_id and score fields and a box and label per
instance. ~/scene: the map. ~/objects and ~/objects/points: the object memory's objects, labelled
"#id label" with the label a query last gave them.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point, Vector3
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from sole_ros.msg import ObjectInstance
from sole_ros.ros.markers import instance_markers
from sole_ros.ros.pointcloud import make_cloud
from sole_ros.ros.transforms import seconds_to_stamp

__all__ = ["NodeOutputs", "instance_msg"]


def _rgb8(colors: np.ndarray) -> np.ndarray:
    return (colors * 255).astype(np.uint8)


def instance_msg(
    object_id: int, inst, header, coords, colors, include_points: bool
) -> ObjectInstance:
    """An answer's instance as ObjectInstance (its points as a cloud when asked)."""
    msg = ObjectInstance(
        id=object_id, label=inst.label, score=float(inst.score), num_points=int(inst.num_points)
    )
    msg.centroid = Point(**dict(zip("xyz", map(float, inst.centroid))))
    msg.bbox_center = Point(**dict(zip("xyz", map(float, inst.bbox_center))))
    msg.bbox_size = Vector3(**dict(zip("xyz", map(float, inst.bbox_size))))
    if include_points:
        idx = inst.point_indices
        msg.points = make_cloud(header, coords[idx], _rgb8(colors[idx]))
    return msg


class _Labelled:
    """An inference Instance with the id it has in this answer (what markers need)."""

    def __init__(self, index: int, inst, label: str | None = None):
        self.id = index
        self.label = inst.label if label is None else label
        self.score, self.num_points = inst.score, inst.num_points
        self.centroid, self.bbox_center, self.bbox_size = (
            inst.centroid,
            inst.bbox_center,
            inst.bbox_size,
        )


class NodeOutputs:
    """The node's lifecycle publishers of answers and map; ``fixed_frame()`` names their frame."""

    def __init__(self, node, fixed_frame):
        self._fixed_frame = fixed_frame
        latched = QoSProfile(
            depth=1,
            history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.instances_pub = node.create_lifecycle_publisher(PointCloud2, "~/instances", latched)
        self.markers_pub = node.create_lifecycle_publisher(MarkerArray, "~/markers", latched)
        self.scene_pub = node.create_lifecycle_publisher(PointCloud2, "~/scene", latched)
        self.objects_pub = node.create_lifecycle_publisher(MarkerArray, "~/objects", latched)
        self.object_points_pub = node.create_lifecycle_publisher(
            PointCloud2, "~/objects/points", latched
        )
        self._object_labels: dict[
            int, str
        ] = {}  # stable object id -> the label a query last gave it

    def header(self, stamp: float) -> Header:
        return Header(frame_id=self._fixed_frame(), stamp=seconds_to_stamp(stamp))

    def remember_labels(self, object_ids, instances) -> None:
        """The labels an answer gave remembered objects, for ~/objects."""
        for object_id, inst in zip(object_ids, instances):
            if object_id:
                self._object_labels[object_id] = inst.label

    def publish_instances(self, instances, segmentation) -> None:
        header = self.header(segmentation.snapshot.stamp)
        coords, colors = segmentation.snapshot.coords, segmentation.snapshot.colors
        parts = [inst.point_indices for inst in instances]
        idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        ids = (
            np.concatenate([np.full(len(p), i, np.uint32) for i, p in enumerate(parts)])
            if parts
            else np.zeros(0, np.uint32)
        )
        scores = (
            np.concatenate(
                [np.full(len(p), inst.score, np.float32) for p, inst in zip(parts, instances)]
            )
            if parts
            else np.zeros(0, np.float32)
        )
        cloud = make_cloud(
            header, coords[idx], _rgb8(colors[idx]), {"instance_id": ids, "score": scores}
        )
        labelled = [_Labelled(i, inst) for i, inst in enumerate(instances)]
        self.instances_pub.publish(cloud)
        self.markers_pub.publish(instance_markers(header, labelled))

    def publish_objects(self, segmentation) -> None:
        """~/objects: a box and "#id label" per remembered object of this segmentation (labels from
        the queries that named them), and ~/objects/points: their points with an object_id field."""
        header = self.header(segmentation.snapshot.stamp)
        coords, colors = segmentation.snapshot.coords, segmentation.snapshot.colors
        objects = segmentation.objects
        idx = np.concatenate([inst.point_indices for _, inst in objects])
        ids = np.concatenate(
            [np.full(len(inst.point_indices), object_id, np.uint32) for object_id, inst in objects]
        )
        self.object_points_pub.publish(
            make_cloud(header, coords[idx], _rgb8(colors[idx]), {"object_id": ids})
        )
        labelled = [
            _Labelled(
                object_id, inst, f"#{object_id} {self._object_labels.get(object_id, '')}".strip()
            )
            for object_id, inst in objects
        ]
        self.objects_pub.publish(
            instance_markers(header, labelled, ns="sole_objects", show_score=False)
        )
        if (
            len(self._object_labels) > 4 * len(objects) + 1000
        ):  # ids keep counting up: keep the current ones
            shown = {object_id for object_id, _ in objects}
            labels = dict(self._object_labels)  # a copy: query threads add to it meanwhile
            self._object_labels = {k: v for k, v in labels.items() if k in shown}

    def publish_scene(self, pipeline) -> None:
        if pipeline is None or pipeline.map.num_voxels == 0:
            return
        snapshot = pipeline.map.export()
        self.scene_pub.publish(
            make_cloud(self.header(snapshot.stamp), snapshot.coords, _rgb8(snapshot.colors))
        )
