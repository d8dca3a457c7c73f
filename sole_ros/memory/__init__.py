"""Object memory (ROS-free): stable ids for the instances of repeated segmentations of the map.

    from sole_ros.memory import ObjectMemory, detections_from_instances, observe_depth_frame

    memory = ObjectMemory(voxel_size=voxel_map.voxel_size)
    # after each segmentation
    snapshot = pipeline.segmentation.snapshot
    detections = detections_from_instances(pipeline.full_segmentation(), snapshot)
    present = keys_from_centres(snapshot.coords, snapshot.voxel_size)
    ids = memory.update(detections, snapshot.stamp, present_keys=present)
    # for (some) depth frames: retire objects whose space is seen empty
    retired = observe_depth_frame(memory, depth_m, K, pose, tolerance=2.5 * voxel_map.voxel_size)

Modules: object_memory (association, merges, retirement, the size bound, arrays for saving),
depth_observation (depth frames retire objects whose space is seen empty).
"""

from sole_ros.scene.free_space import seen_occupied, seen_through

from .depth_observation import key_centres, observe_depth_frame
from .object_memory import (
    Detection,
    FrameReport,
    MemoryObject,
    ObjectMemory,
    UpdateReport,
    as_keys,
    detections_from_instances,
    keys_from_centres,
)

__all__ = [
    "ObjectMemory",
    "MemoryObject",
    "Detection",
    "UpdateReport",
    "FrameReport",
    "as_keys",
    "keys_from_centres",
    "detections_from_instances",
    "key_centres",
    "seen_through",
    "seen_occupied",
    "observe_depth_frame",
]
