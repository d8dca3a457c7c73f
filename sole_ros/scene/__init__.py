"""Scene accumulation (ROS-free): a bounded world-frame voxel map fed by depth clouds and RGB-D
frames, with dense CLIP features fused over views.

    from sole_ros.scene import VoxelMap, InvalidInput, DenseClipFeatures, KeyframeSelector
"""
from .dense_clip import DenseClipFeatures
from .errors import InvalidInput, MapFileError
from .keyframes import KeyframeSelector
from .map_file import FORMAT_VERSION
from .validation import COLOR_ENCODINGS, unpack_rgb
from .voxel_map import IntegrationSummary, SceneSnapshot, VoxelMap

__all__ = ["VoxelMap", "SceneSnapshot", "IntegrationSummary", "InvalidInput", "MapFileError",
           "DenseClipFeatures", "KeyframeSelector", "FORMAT_VERSION", "COLOR_ENCODINGS", "unpack_rgb"]
