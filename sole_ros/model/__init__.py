"""The SOLE network, its configuration, checkpoint loading and the CLIP text encoder."""

from sole_ros.model.config import SoleConfig

__all__ = ["SoleConfig", "SoleModel", "SceneEncoding", "VoxelScene", "voxelize"]


def __getattr__(name):
    # Lazy: importing the config must not import MinkowskiEngine or open_clip.
    if name in ("SoleModel", "SceneEncoding"):
        from sole_ros.model import sole

        return getattr(sole, name)
    if name in ("VoxelScene", "voxelize"):
        from sole_ros.model import voxel

        return getattr(voxel, name)
    raise AttributeError(name)
