"""Real Kinect tabletop scans of the modified Object Segmentation Database (mOSD), for
class-agnostic evaluation on real sensor data.

Files: PCD with fields label, x, y, z, rgba (camera frame, metres; organised, NaN where no depth).
Labels (facts from the data's README): 0 unlabelled, 1-9 parts of the supporting table, 20-29
parts of the first object, 30-39 of the second, ...; an object is label // 10 for labels >= 20.
Here: semantic TABLE (1) or OBJECT (2), -1 unlabelled; instance = label // 10 for objects, -1
otherwise; the table is not an instance target.

The scans are in the camera frame; models trained on z-up scenes expect gravity along -z. With
``gravity_align`` the cloud is rotated so that the table plane (a least-squares fit to the table
points) is horizontal with the camera above it, and shifted so the table top sits at
``table_height`` — what a robot gets from its own TF tree.
"""

from __future__ import annotations

import pathlib

import numpy as np

from sole_ros.datasets.scene_sample import SceneSample

TABLE, OBJECT = 1, 2
CLASS_NAMES = {TABLE: "table", OBJECT: "object"}


def read_mosd(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points [N,3] float32, colours [N,3] in 0..1, labels [N]) of the finite points of a scan."""
    from pypcd4 import PointCloud

    data = PointCloud.from_path(str(path)).pc_data
    xyz = np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1)
    rgba = data["rgba"][keep].astype(np.uint32)
    colors = np.stack([(rgba >> 16) & 255, (rgba >> 8) & 255, rgba & 255], axis=1) / 255.0
    return xyz[keep], colors.astype(np.float32), data["label"][keep].astype(np.int64)


def _table_frame(
    points: np.ndarray, table: np.ndarray, table_height: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation taking camera coordinates to a z-up frame with the table at
    ``table_height`` and the camera (the origin) on the up side."""
    centre = points[table].mean(axis=0)
    _, _, vt = np.linalg.svd(points[table] - centre, full_matrices=False)
    normal = vt[2]
    if np.dot(-centre, normal) < 0:  # point the normal towards the camera
        normal = -normal
    z = normal
    x = np.cross([0.0, 1.0, 0.0], z)
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rotation = np.stack([x, y, z])  # rows: new axes in camera coordinates
    translation = -rotation @ centre + np.array([0.0, 0.0, table_height])
    return rotation, translation


class MosdScans:
    """The .pcd scans of a folder as SceneSample (class-agnostic: objects vs table)."""

    def __init__(
        self,
        folder,
        gravity_align: bool = True,
        table_height: float = 0.75,
        max_points: int | None = 60000,
        seed: int = 0,
    ):
        self.folder = pathlib.Path(folder)
        self.files = sorted(self.folder.glob("*.pcd"), key=lambda p: (len(p.stem), p.stem))
        if not self.files:
            raise FileNotFoundError(f"no .pcd scans in {self.folder}")
        self.gravity_align = gravity_align
        self.table_height = table_height
        self.max_points = max_points
        self.seed = seed
        self.class_names = dict(CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SceneSample:
        points, colors, labels = read_mosd(self.files[index])
        semantic = np.where(
            labels >= 20, OBJECT, np.where((labels >= 1) & (labels <= 9), TABLE, -1)
        )
        instance = np.where(labels >= 20, labels // 10, -1)
        if self.gravity_align and (semantic == TABLE).sum() >= 3:
            rotation, translation = _table_frame(
                points.astype(np.float64), semantic == TABLE, self.table_height
            )
            points = (points @ rotation.T + translation).astype(np.float32)
        if self.max_points is not None and len(points) > self.max_points:
            keep = np.sort(
                np.random.default_rng([self.seed, index]).choice(
                    len(points), self.max_points, replace=False
                )
            )
            points, colors, semantic, instance = (
                points[keep],
                colors[keep],
                semantic[keep],
                instance[keep],
            )
        return SceneSample(
            name=self.files[index].stem,
            points=points,
            colors=colors,
            semantic=semantic,
            instance=instance,
            ignored_labels=(TABLE,),
            class_names=dict(CLASS_NAMES),
        )
