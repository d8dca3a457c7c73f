"""Data loaders: small files written in the processed ScanNet, OpenScene and SOLE target layouts."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import yaml

from sole_ros.datasets import (
    PointFeatureFolder,
    ProcessedScanNet,
    ReleasedTargets,
    SceneSample,
    SyntheticScenes,
    TextOracleFeatures,
    UnsafePickleError,
    load_mca,
    load_mea,
    load_point_features,
    save_openscene_features,
    scan_name,
    write_processed_scene,
)
from sole_ros.synthetic import CLASS_NAMES

WALL, CHAIR, FLOOR, TABLE = 1, 2, 3, 4  # ScanNet200 ids


def _scene_arrays(rng, n=300):
    points = rng.uniform(0, 3, (n, 3))
    colors = rng.integers(0, 256, (n, 3))
    normals = rng.normal(size=(n, 3))
    segments = rng.integers(0, 20, n)
    semantic = np.full(n, WALL)
    instance = np.full(n, -1)
    semantic[:100], instance[:100] = WALL, 0  # the wall has an instance id but is not a target
    semantic[100:160], instance[100:160] = CHAIR, 7
    semantic[160:220], instance[160:220] = TABLE, 3
    semantic[220:260], instance[220:260] = FLOOR, 1
    semantic[260:], instance[260:] = CHAIR, -1  # labelled but no instance
    return points, colors, normals, segments, semantic, instance


@pytest.fixture
def processed_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "scannet200"
    entries = []
    for scan in ("scene0000_00", "scene0011_01"):
        path = write_processed_scene(root, "train", scan, *_scene_arrays(rng))
        entries.append(
            {
                "filepath": f"data/processed/scannet200/train/{path.name}",
                "scene": int(scan[5:9]),
                "sub_scene": int(scan[10:]),
                "raw_filepath": f"/raw/scans/{scan}/{scan}_vh_clean_2.ply",
                "file_len": 300,
            }
        )
    (root / "train_database.yaml").write_text(yaml.safe_dump(entries))
    labels = {
        WALL: {"name": "wall", "color": [1, 2, 3], "validation": True},
        CHAIR: {"name": "chair", "color": [1, 2, 3], "validation": True},
        FLOOR: {"name": "floor", "color": [1, 2, 3], "validation": True},
        TABLE: {"name": "table", "color": [1, 2, 3], "validation": True},
    }
    (root / "label_database.yaml").write_text(yaml.safe_dump(labels))
    (root / "color_mean_std.yaml").write_text(
        yaml.safe_dump({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]})
    )
    return root


def test_processed_scannet_columns_names_and_target_order(processed_root):
    data = ProcessedScanNet(processed_root, "train")
    assert len(data) == 2 and data.names == ["scene0000_00", "scene0011_01"]
    assert set(data.ignored_labels) == {WALL, FLOOR}
    sample = data[0]
    raw = np.load(processed_root / "train" / "0000_00.npy")
    assert raw.shape == (300, 12)
    np.testing.assert_allclose(sample.points, raw[:, :3])
    np.testing.assert_allclose(sample.colors, raw[:, 3:6] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(sample.normals, raw[:, 6:9])
    # Targets: ascending instance ids, wall (0) and floor (1) and unassigned points (-1) left out.
    np.testing.assert_array_equal(sample.instance_ids, [3, 7])
    np.testing.assert_array_equal(sample.instance_labels(), [TABLE, CHAIR])
    masks = sample.instance_masks()
    assert masks.shape == (2, 300) and masks[0].sum() == 60 and masks[1, 100:160].all()
    assert data.color_mean_std["mean"] == [0.5, 0.4, 0.3]
    assert data.class_names[CHAIR] == "chair"


def test_processed_scannet_without_database_globs_the_split(tmp_path):
    rng = np.random.default_rng(1)
    write_processed_scene(tmp_path, "validation", "scene0123_02", *_scene_arrays(rng))
    data = ProcessedScanNet(tmp_path, "validation")
    assert data.names == ["scene0123_02"] and len(data[0]) == 300
    with pytest.raises(FileNotFoundError):
        ProcessedScanNet(tmp_path, "train")
    assert scan_name("0007_01.npy") == "scene0007_01"
    with pytest.raises(ValueError):
        scan_name("kitchen.npy")


def test_test_split_files_without_labels_load(tmp_path):
    rng = np.random.default_rng(2)
    p, c, n, s, _, _ = _scene_arrays(rng)
    write_processed_scene(tmp_path, "test", "scene0707_00", p, c, n, s)
    sample = ProcessedScanNet(tmp_path, "test")[0]
    assert len(sample.instance_ids) == 0 and len(sample) == 300


def test_openscene_and_dense_point_features(tmp_path):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(50, 16)).astype(np.float32)
    valid = rng.random(50) < 0.7
    save_openscene_features(tmp_path / "scene0000_00_0.pt", features, valid)
    saved = torch.load(tmp_path / "scene0000_00_0.pt", weights_only=True)
    assert saved["feat"].dtype == torch.float16 and saved["feat"].shape == (valid.sum(), 16)
    full, mask = PointFeatureFolder(tmp_path)("scene0000_00", 50)
    np.testing.assert_array_equal(mask, valid)
    assert (full[~valid] == 0).all()
    expected = features[valid] / np.linalg.norm(features[valid], axis=1, keepdims=True)
    np.testing.assert_allclose(full[valid], expected, atol=2e-3)  # half precision on disk
    # SOLE's release: one dense tensor for all points.
    torch.save(torch.from_numpy(features).half(), tmp_path / "scene0001_00_0.pt")
    dense, dense_mask = load_point_features(tmp_path / "scene0001_00_0.pt", 50)
    assert dense_mask.all() and np.allclose(np.linalg.norm(dense, axis=1), 1, atol=1e-3)
    with pytest.raises(ValueError):
        load_point_features(tmp_path / "scene0001_00_0.pt", 49)
    with pytest.raises(FileNotFoundError):
        PointFeatureFolder(tmp_path)("scene0002_00", 50)


def _write_targets(folder, scan, k, d, rng):
    mca_rows = [torch.from_numpy(rng.normal(size=(1, d)).astype(np.float32)) for _ in range(k)]
    guide = torch.from_numpy(rng.normal(size=(k, d)).astype(np.float32))
    (folder / "mca").mkdir(exist_ok=True)
    (folder / "mea").mkdir(exist_ok=True)
    with open(folder / "mca" / f"{scan}.pickle", "wb") as f:
        pickle.dump({"features": mca_rows}, f)
    with open(folder / "mea" / f"{scan}.pickle", "wb") as f:
        pickle.dump({"guide": guide, "key": ["a chair", "a table"]}, f)
    return torch.cat(mca_rows).numpy(), guide.numpy()


def test_released_mca_mea_pickles_load_in_instance_order(tmp_path, processed_root):
    rng = np.random.default_rng(4)
    mca, mea = _write_targets(tmp_path, "scene0000_00", 2, 8, rng)
    np.testing.assert_array_equal(load_mca(tmp_path / "mca" / "scene0000_00.pickle"), mca)
    np.testing.assert_array_equal(load_mea(tmp_path / "mea" / "scene0000_00.pickle"), mea)
    _write_targets(tmp_path, "scene0011_01", 3, 8, rng)  # one row too many for that scene
    feats = tmp_path / "feats"
    feats.mkdir()
    for scan in ("scene0000_00", "scene0011_01"):
        save_openscene_features(
            feats / f"{scan}_0.pt", rng.normal(size=(300, 8)), np.ones(300, bool)
        )
    data = ProcessedScanNet(
        processed_root,
        "train",
        features=PointFeatureFolder(feats),
        targets=ReleasedTargets(tmp_path / "mca", tmp_path / "mea"),
    )
    sample = data[0]
    np.testing.assert_array_equal(sample.mca_targets, mca)
    assert sample.clip_features.shape == (300, 8) and sample.clip_valid.all()
    with pytest.raises(ValueError, match="3 MCA targets for 2"):
        data[1]
    # A subset that loses the table keeps the chair's rows.
    chair_only = sample.subset(sample.semantic != TABLE)
    np.testing.assert_array_equal(chair_only.instance_ids, [7])
    np.testing.assert_array_equal(chair_only.mca_targets, mca[1:])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pickle", "wb") as f:
        pickle.dump({"features": [_Exploit(marker)]}, f)
    with pytest.raises(UnsafePickleError):
        load_mca(tmp_path / "evil.pickle")
    assert not marker.exists()


def test_synthetic_scenes_carry_captions_instances_and_oracle_features():
    def encode(phrases):  # a deterministic text encoder: bag of hashed words, normalised
        out = np.zeros((len(phrases), 32), np.float32)
        for i, phrase in enumerate(phrases):
            for word in phrase.split():
                out[i, sum(map(ord, word)) % 32] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    data = SyntheticScenes(
        [3, 4], kind="tabletop", features=TextOracleFeatures(encode, noise=0.0, unseen=0.1)
    )
    sample = data[0]
    again = SyntheticScenes(
        [3], kind="tabletop", features=TextOracleFeatures(encode, noise=0.0, unseen=0.1)
    )[0]
    np.testing.assert_array_equal(sample.points, again.points)
    np.testing.assert_array_equal(sample.clip_valid, again.clip_valid)
    ids = sample.instance_ids
    assert len(ids) >= 5 and set(ids) == set(sample.captions)
    assert (sample.instance[sample.semantic == -1] == -1).all()
    assert set(np.unique(sample.semantic)) - {-1} <= set(range(len(CLASS_NAMES)))
    # Oracle features: every seen point of an object carries its category's embedding.
    for instance_id in ids:
        on = (sample.instance == instance_id) & sample.clip_valid
        head = encode([sample.entity_phrases[int(instance_id)][-1]])[0]
        np.testing.assert_allclose(
            sample.clip_features[on], np.broadcast_to(head, (on.sum(), 32)), atol=1e-5
        )
    assert 0.05 < 1 - sample.clip_valid.mean() < 0.15
    assert (sample.clip_features[~sample.clip_valid] == 0).all()


def test_synthetic_scan_source_fuses_rendered_frames():
    sample = SyntheticScenes(
        [5], kind="tabletop", source="scan", num_frames=4, image_size=(80, 60), max_points=5000
    )[0]
    assert len(sample) == 5000 and len(sample.instance_ids) >= 3
    with pytest.raises(ValueError):
        SyntheticScenes([1], source="mesh")


def test_rooms_take_their_own_point_cap_in_mixed_scenes():
    # seed 4 is a tabletop, seed 5 a room (mixed scenes alternate by parity)
    scenes = SyntheticScenes(
        [4, 5],
        source="scan",
        num_frames=2,
        image_size=(80, 60),
        mixed_kinds=True,
        max_points=None,
        room_max_points=1500,
    )
    tabletop, room = scenes[0], scenes[1]
    assert "tabletop" in tabletop.name and "room" in room.name
    assert len(room) == 1500 and len(tabletop) > 1500
    # without a room cap, rooms follow max_points
    assert (
        len(
            SyntheticScenes(
                [5],
                source="scan",
                num_frames=2,
                image_size=(80, 60),
                mixed_kinds=True,
                max_points=1000,
            )[0]
        )
        == 1000
    )


def test_scene_sample_validates_shapes():
    with pytest.raises(ValueError):
        SceneSample("x", np.zeros((4, 3)), np.zeros((3, 3)), np.zeros(4), np.zeros(4))


def test_mosd_real_scans_load_with_objects_as_instances_and_a_level_table():
    from conftest import shared_data

    from sole_ros.datasets.mosd import OBJECT, TABLE, MosdScans

    scans = MosdScans(shared_data("mosd"), max_points=20000)
    assert len(scans) == 8
    sample = scans[scans.files.index(shared_data("mosd", "learn33.pcd"))]
    assert len(sample) == 20000
    # learn33: cylindrical objects, labels 20..6x -> objects 2..6; the table is no target.
    assert list(sample.instance_ids) == [2, 3, 4, 5, 6]
    assert set(np.unique(sample.semantic)) <= {-1, TABLE, OBJECT}
    table = sample.points[sample.semantic == TABLE]
    assert abs(table[:, 2].mean() - 0.75) < 0.01 and table[:, 2].std() < 0.01  # gravity-aligned
    objects = sample.points[sample.semantic == OBJECT]
    assert np.median(objects[:, 2]) > 0.76  # standing on the table, not below it
