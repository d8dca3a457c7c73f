"""Scene accumulation (ROS-free): a bounded world-frame voxel map fed by depth clouds and RGB-D
frames, with dense CLIP features fused over views.

    from sole_ros.clip import ClipSpec, load_clip
    from sole_ros.scene import DenseClipFeatures, InvalidInput, KeyframeSelector, VoxelMap

    clip = load_clip(ClipSpec(), "cuda")                       # ViT-L-14, 768-d joint space
    dense = DenseClipFeatures(clip)
    scene = VoxelMap(voxel_size=0.02, max_voxels=500_000, feature_dim=dense.feature_dim)
    keyframes = KeyframeSelector(min_translation=0.10, min_rotation_deg=10.0)

    # callback threads
    try:
        features = dense.frame_features(rgb) if keyframes.accept(pose, stamp) else None
        scene.integrate_rgbd(depth, K, pose, rgb, stamp=stamp, features=features)
        scene.integrate_points(points, pose, colors, stamp=stamp)
    except InvalidInput as error:                               # nothing reached the map
        log.warning(str(error))

    # segmentation worker
    snapshot = scene.export()     # coords, colors, features (unit rows), has_feature, version

Modules: voxel_map (the map: integration, bounds, export, persistence), eviction_policy (which
voxels leave it, and when: the EvictionPolicy interface and the map's OldestSeenFirst),
color_averaging and feature_fusion (per-voxel colour and CLIP feature means), voxel_store (slot
storage and key index), voxel_keys (packing and grouping of voxel keys), validation (input
checks), camera (rays and projection), dense_clip (MaskCLIP-style dense features), keyframes,
rendering (depth images from the map), map_file (versioned, checksummed, atomic, bounded file
format), saved_map (what a map file must hold), scene_folder (the one folder the node's scene
services read and write), free_space (what a depth frame sees through).
"""

from .dense_clip import DenseClipFeatures
from .errors import InvalidInput, MapFileError
from .keyframes import KeyframeSelector
from .map_file import FORMAT_VERSION
from .validation import COLOR_ENCODINGS, DEPTH_ENCODINGS, unpack_rgb
from .voxel_map import IntegrationSummary, SceneSnapshot, VoxelMap

__all__ = [
    "VoxelMap",
    "SceneSnapshot",
    "IntegrationSummary",
    "InvalidInput",
    "MapFileError",
    "DenseClipFeatures",
    "KeyframeSelector",
    "FORMAT_VERSION",
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "unpack_rgb",
]
