"""The processed ScanNet / ScanNet200 layout of Mask3D, which SOLE trains on.

Layout (facts from the public Mask3D preprocessing and SOLE's data configs):
  <root>/<mode>/<scene:04>_<sub:02>.npy   float32 [N, 12] per scene:
        x y z | r g b (0..255) | nx ny nz | segment id | semantic label | instance id (-1: none)
        (test scenes have 10 columns: no labels)
  <root>/<mode>_database.yaml             list of {filepath, scene, sub_scene, raw_filepath, ...};
        the scan name (scene0000_00) is the folder of raw_filepath
  <root>/label_database.yaml              {label id: {name, color, validation}}
  <root>/color_mean_std.yaml              {mean: [3], std: [3]} of colours in 0..1
Semantic labels are raw ScanNet ids (ScanNet200: the 200 benchmark ids). Instance targets leave
out wall and floor, as the reference does.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from sole_ros.datasets.scene_sample import SceneSample
from sole_ros.evaluation.benchmark_classes import NON_INSTANCE_NAMES

COLUMNS = {
    "xyz": slice(0, 3),
    "rgb": slice(3, 6),
    "normals": slice(6, 9),
    "segment": 9,
    "semantic": 10,
    "instance": 11,
}
MODES = ("train", "validation", "test")


def _load_yaml(path: pathlib.Path):
    import yaml

    with open(path) as f:
        return yaml.safe_load(f)


def scan_name(entry_or_path) -> str:
    """'scene0000_00' from a database entry or a processed file name ('0000_00.npy')."""
    if isinstance(entry_or_path, dict):
        raw = entry_or_path.get("raw_filepath")
        if raw:
            return pathlib.PurePath(str(raw)).parent.name
        entry_or_path = entry_or_path["filepath"]
    stem = pathlib.PurePath(str(entry_or_path)).stem
    m = re.fullmatch(r"(?:scene)?(\d{4})_(\d{2})", stem)
    if not m:
        raise ValueError(f"cannot tell the ScanNet scan of {entry_or_path!r}")
    return f"scene{m.group(1)}_{m.group(2)}"


class ProcessedScanNet:
    """Scenes of one split of a processed ScanNet(200) folder, loaded on demand as SceneSample.

    ``features``: an optional callable (scan name, number of points) -> (features [N,D], valid [N])
    that attaches point CLIP features; ``targets``: an optional callable scan name -> (mca [K,D],
    mea [K,D]) that attaches the released association targets.
    """

    def __init__(self, root, mode: str = "train", features=None, targets=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.root = pathlib.Path(root)
        self.mode = mode
        self.features = features
        self.targets = targets
        database = self.root / f"{mode}_database.yaml"
        if database.exists():
            entries = _load_yaml(database) or []
            self.files = [self._resolve(e["filepath"]) for e in entries]
            self.names = [scan_name(e) for e in entries]
        else:  # no database: every .npy of the split folder
            self.files = sorted((self.root / mode).glob("*.npy"))
            self.names = [scan_name(f) for f in self.files]
        if not self.files:
            raise FileNotFoundError(f"no processed scenes for mode {mode!r} under {self.root}")
        labels_file = self.root / "label_database.yaml"
        self.label_database = _load_yaml(labels_file) if labels_file.exists() else {}
        self.class_names = {int(k): str(v["name"]) for k, v in self.label_database.items()}
        self.ignored_labels = tuple(
            k for k, n in self.class_names.items() if n in NON_INSTANCE_NAMES
        )
        stats = self.root / "color_mean_std.yaml"
        self.color_mean_std = _load_yaml(stats) if stats.exists() else None

    def _resolve(self, filepath: str) -> pathlib.Path:
        path = pathlib.Path(filepath)
        if path.exists():
            return path
        # databases written elsewhere keep absolute or repo-relative paths: use mode/file name here
        return self.root / self.mode / path.name

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SceneSample:
        data = np.load(self.files[index])
        if data.ndim != 2 or data.shape[1] not in (10, 12):
            raise ValueError(
                f"{self.files[index]}: expected [N, 12] (or [N, 10] for test), got {data.shape}"
            )
        n = len(data)
        labelled = data.shape[1] == 12
        name = self.names[index]
        sample = SceneSample(
            name=name,
            points=data[:, COLUMNS["xyz"]],
            colors=data[:, COLUMNS["rgb"]] / 255.0,
            semantic=data[:, COLUMNS["semantic"]].astype(np.int64)
            if labelled
            else np.zeros(n, np.int64),
            instance=data[:, COLUMNS["instance"]].astype(np.int64) if labelled else np.full(n, -1),
            normals=data[:, COLUMNS["normals"]],
            ignored_labels=self.ignored_labels,
            class_names=self.class_names,
        )
        if self.features is not None:
            sample.clip_features, sample.clip_valid = self.features(name, n)
        if self.targets is not None and labelled:
            sample.mca_targets, sample.mea_targets = self.targets(name)
            k = len(sample.instance_ids)
            for what, rows in (("MCA", sample.mca_targets), ("MEA", sample.mea_targets)):
                if rows is not None and len(rows) != k:
                    raise ValueError(
                        f"{name}: {len(rows)} {what} targets for {k} ground-truth instances"
                    )
        return sample


def write_processed_scene(
    root, mode: str, scan: str, points, colors_255, normals, segments, semantic=None, instance=None
) -> pathlib.Path:
    """Write one scene in the processed layout (used to export synthetic scenes and in tests)."""
    m = re.fullmatch(r"scene(\d{4})_(\d{2})", scan)
    if not m:
        raise ValueError(f"scan names look like scene0000_00, got {scan!r}")
    columns = [points, colors_255, normals, np.asarray(segments)[:, None]]
    if semantic is not None:
        columns += [np.asarray(semantic)[:, None], np.asarray(instance)[:, None]]
    path = pathlib.Path(root) / mode / f"{m.group(1)}_{m.group(2)}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.hstack(columns).astype(np.float32))
    return path
