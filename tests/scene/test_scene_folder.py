"""Scene files live in one folder: names are resolved inside it (links first) and anything that
leaves it, or would replace a file that is not a scene file, is refused with the reason."""

from __future__ import annotations

import os
import stat

import pytest

from sole_ros.scene import VoxelMap
from sole_ros.scene.scene_folder import SceneFileRefused, SceneFolder, default_scene_directory


@pytest.fixture
def folder(tmp_path):
    return SceneFolder(tmp_path / "scenes")


def _small_map() -> VoxelMap:
    import numpy as np

    voxel_map = VoxelMap(voxel_size=0.05, max_voxels=10_000)
    voxel_map.integrate_points(
        np.random.default_rng(0).uniform(-1, 1, (500, 3)), np.eye(4), stamp=1.0
    )
    return voxel_map


def test_names_resolve_inside_the_folder(folder, tmp_path):
    root = os.path.realpath(tmp_path / "scenes")
    assert str(folder.path_to_save("kitchen.map")) == os.path.join(root, "kitchen.map")
    assert str(folder.path_to_save("floors/one/kitchen.map")) == os.path.join(
        root, "floors/one/kitchen.map"
    )
    assert os.path.isdir(os.path.join(root, "floors/one"))
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert str(folder.resolve("a/../b.map")) == os.path.join(root, "b.map")
    inside_absolute = os.path.join(root, "c.map")
    assert str(folder.resolve(inside_absolute)) == inside_absolute


@pytest.mark.parametrize(
    "name,reason",
    [
        ("/tmp/x", "outside the scene folder"),
        ("../../../../tmp/x", "outside the scene folder"),
        ("..", "outside the scene folder"),
        (".", "the scene folder .* itself"),
        ("", "no file name given"),
        ("   ", "no file name given"),
        ("a\x00b", "not a usable file name"),
        ("x" * 300, "not a usable file name"),
    ],
)
def test_names_that_leave_the_folder_are_refused(folder, name, reason):
    with pytest.raises(SceneFileRefused, match=reason):
        folder.path_to_save(name)
    with pytest.raises(SceneFileRefused, match=reason):
        folder.path_to_load(name)


def test_links_are_resolved_before_the_check(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.map").write_bytes(b"not yours")
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "to_outside_file.map").symlink_to(outside / "secret.map")
    (root / "to_outside_dir").symlink_to(outside, target_is_directory=True)
    (root / "to_zero.map").symlink_to("/dev/zero")
    for name in ("to_outside_file.map", "to_outside_dir/new.map", "to_zero.map"):
        with pytest.raises(SceneFileRefused, match="outside the scene folder"):
            folder.path_to_save(name)
        with pytest.raises(SceneFileRefused, match="outside the scene folder"):
            folder.path_to_load(name)
    assert (outside / "secret.map").read_bytes() == b"not yours" and not (
        outside / "new.map"
    ).exists()


def test_save_replaces_only_scene_files(folder, tmp_path):
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(SceneFileRefused, match="not a sole_ros scene file: refusing to replace it"):
        folder.path_to_save("notes.txt")
    assert (root / "notes.txt").read_text() == "keep me"
    (root / "sub").mkdir()
    with pytest.raises(SceneFileRefused, match="not a regular file"):
        folder.path_to_save("sub")
    # a stand-in special file: a named pipe must stay one, never become a regular file
    os.mkfifo(root / "special")
    with pytest.raises(SceneFileRefused, match="not a regular file"):
        folder.path_to_save("special")
    assert stat.S_ISFIFO(os.lstat(root / "special").st_mode)
    # an earlier scene file is replaced
    path = folder.path_to_save("scene.map")
    _small_map().save(path)
    assert folder.path_to_save("scene.map") == path


def test_load_names_a_missing_file(folder):
    with pytest.raises(SceneFileRefused, match="no such scene file"):
        folder.path_to_load("absent.map")


def test_default_folder_is_under_the_ros_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "roshome"))
    assert default_scene_directory() == tmp_path / "roshome" / "sole_ros" / "scenes"
    assert SceneFolder("").directory == tmp_path / "roshome" / "sole_ros" / "scenes"
    monkeypatch.delenv("ROS_HOME")
    assert default_scene_directory() == __import__("pathlib").Path(
        os.path.expanduser("~/.ros/sole_ros/scenes")
    )
