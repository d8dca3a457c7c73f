"""The one folder the scene services read and write, and names resolved inside it.

A perception node often runs as root, and its services answer any process on the ROS graph: a
save service that writes any path can overwrite system files, and a load service that reads any
path can be pointed at /dev/zero or a named pipe. So a request names a file *inside* the scene
folder (a name, or a relative path; an absolute path only when it lies inside), links are
resolved before the check, and:

- save writes only a new file or over an earlier map file of this package (its magic bytes),
  never over another file, a link, a folder or a device, and never outside the folder;
- load reads only a regular file inside the folder, with the size bound the map gives
  (``VoxelMap.file_size_limit``), opened without blocking (sole_ros/scene/map_file.py).

Checking and then writing leaves a window in which another process that can write into the
folder could swap a name for a link; the folder is created private (0700) so that only the
node's own user can.
"""

from __future__ import annotations

import os
import pathlib
import stat

from .errors import MapFileError
from .map_file import MAGIC, READ_FLAGS

MAX_NAME_LENGTH = 255


class SceneFileRefused(MapFileError):
    """A scene file name the folder's rules refuse; str() says which rule."""


def default_scene_directory() -> pathlib.Path:
    """$ROS_HOME/sole_ros/scenes, or ~/.ros/sole_ros/scenes (where ROS 2 keeps its logs too)."""
    ros_home = os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    return pathlib.Path(ros_home) / "sole_ros" / "scenes"


class SceneFolder:
    def __init__(self, directory: str | os.PathLike | None = None):
        directory = os.fspath(directory) if directory else ""
        self.directory = (
            pathlib.Path(os.path.expanduser(directory)) if directory else default_scene_directory()
        )

    def _root(self, create: bool) -> pathlib.Path:
        if create:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return pathlib.Path(os.path.realpath(self.directory))

    def resolve(self, name: str, create: bool = False) -> pathlib.Path:
        """The real path ``name`` means inside the folder; SceneFileRefused when it leaves it."""
        if not isinstance(name, str) or not name.strip():
            raise SceneFileRefused(
                f"no file name given: name a file inside the scene folder ({self.directory})"
            )
        if (
            "\x00" in name
            or len(name) > 4 * MAX_NAME_LENGTH
            or any(len(part) > MAX_NAME_LENGTH for part in name.split("/"))
        ):
            raise SceneFileRefused(f"{name[:80]!r} is not a usable file name")
        root = self._root(create)
        target = pathlib.Path(os.path.realpath(root / name))  # an absolute name replaces root here
        if target == root:
            raise SceneFileRefused(
                f"{name!r} names the scene folder {root} itself, not a file in it"
            )
        if root not in target.parents:
            raise SceneFileRefused(
                f"{name!r} resolves to {target}, outside the scene folder {root} "
                "(scene.directory): refused"
            )
        return target

    def path_to_save(self, name: str) -> pathlib.Path:
        """Where a save of ``name`` may write: a new file, or an earlier map file of this package."""
        target = self.resolve(name, create=True)
        try:
            status = os.lstat(target)
        except FileNotFoundError:
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return target
        if not stat.S_ISREG(status.st_mode):
            raise SceneFileRefused(f"{target} exists and is not a regular file: refused")
        if not _starts_with_magic(target):
            raise SceneFileRefused(
                f"{target} exists and is not a sole_ros scene file: refusing to replace it"
            )
        return target

    def path_to_load(self, name: str) -> pathlib.Path:
        """The file a load of ``name`` reads (its kind and size are checked as it is opened)."""
        target = self.resolve(name)
        if not target.exists():
            raise SceneFileRefused(f"{target}: no such scene file in {self._root(False)}")
        return target


def _starts_with_magic(path: pathlib.Path) -> bool:
    try:
        handle = os.open(path, READ_FLAGS)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(handle).st_mode) and os.read(handle, len(MAGIC)) == MAGIC
    finally:
        os.close(handle)
