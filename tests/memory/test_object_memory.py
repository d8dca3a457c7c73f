"""The object memory: stable ids across segmentations, merges, retirement by depth frames seeing
through an object's space, the size bound, saving as arrays, and the real tiny pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sole_ros.memory import (
    Detection,
    ObjectMemory,
    detections_from_instances,
    key_centres,
    keys_from_centres,
    observe_depth_frame,
    seen_occupied,
    seen_through,
)
from sole_ros.memory.object_memory import _intersections
from sole_ros.scene import InvalidInput, VoxelMap, map_file, voxel_keys
from sole_ros.scene.rendering import render_voxel_depth
from sole_ros.synthetic.camera import kinect_intrinsics, look_at

VOXEL = 0.02


def box_keys(low, high) -> np.ndarray:
    """Keys of the integer voxel box low..high (inclusive), sorted."""
    axes = [np.arange(lo, hi + 1) for lo, hi in zip(low, high)]
    coords = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return np.sort(voxel_keys.pack(coords))


def shifted(keys: np.ndarray, offset) -> np.ndarray:
    return np.sort(voxel_keys.pack(voxel_keys.unpack(keys) + np.asarray(offset)))


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


# Three well separated 6x6x6-voxel objects.
MUG = box_keys((0, 0, 0), (5, 5, 5))
BOWL = box_keys((20, 0, 0), (25, 5, 5))
BOOK = box_keys((0, 20, 0), (5, 25, 5))


def test_the_same_detections_get_the_same_ids_again():
    memory = ObjectMemory(VOXEL)
    first = memory.update([Detection(MUG), Detection(BOWL), Detection(BOOK)], stamp=1.0)
    assert len(set(first)) == 3
    # in another order too: ids follow the voxels, not the position in the list
    again = memory.update([Detection(BOOK), Detection(MUG), Detection(BOWL)], stamp=2.0)
    assert again == [first[2], first[0], first[1]]
    assert memory.last_report.created == [] and sorted(
        memory.last_report.matched_by_overlap
    ) == sorted(first)
    assert memory.stats()["objects"] == 3 and memory.get(first[0]).observations == 2
    # keys in any order, repeated, of any integer type: the same voxel set
    assert memory.update([Detection(np.r_[MUG[::-1], MUG[:5]].astype(np.uint64))], stamp=3.0) == [
        first[0]
    ]
    np.testing.assert_array_equal(memory.get(first[0]).keys, MUG)


@pytest.mark.parametrize("offset", [(1, 0, 0), (0, 2, 0), (1, 1, 1), (-2, 0, 1)])
def test_ids_survive_detections_shifted_by_a_voxel_or_two(offset):
    memory = ObjectMemory(VOXEL)
    first = memory.update([Detection(MUG), Detection(BOWL), Detection(BOOK)], stamp=1.0)
    moved = memory.update([Detection(shifted(k, offset)) for k in (MUG, BOWL, BOOK)], stamp=2.0)
    assert moved == first
    np.testing.assert_array_equal(memory.get(first[0]).keys, shifted(MUG, offset))


def test_a_new_object_gets_a_new_id_and_retired_ids_are_never_reused():
    memory = ObjectMemory(VOXEL, retire_votes=1)
    mug, bowl = memory.update([Detection(MUG), Detection(BOWL)], stamp=1.0)
    (book,) = memory.update([Detection(BOOK)], stamp=2.0)
    assert book not in (mug, bowl)
    assert memory.observe_free(BOWL) == [bowl]
    assert memory.get(bowl) is None and memory.stats()["retired"] == 1
    # a detection where the retired object was is a new object with an id never given before
    (again,) = memory.update([Detection(BOWL)], stamp=3.0)
    assert again not in (mug, bowl, book) and again > book


def test_a_detection_bridging_two_objects_merges_them_into_the_older_id():
    left = box_keys((0, 0, 0), (5, 5, 5))
    right = box_keys((6, 0, 0), (11, 5, 5))
    memory = ObjectMemory(VOXEL)
    (older,) = memory.update([Detection(left, label="table")], stamp=1.0)
    (newer,) = memory.update([Detection(right)], stamp=2.0)
    # the next segmentation sees one object across both (IoU with each is 0.5: both qualify)
    (whole,) = memory.update([Detection(np.union1d(left, right))], stamp=3.0)
    assert whole == older
    assert memory.last_report.merged == [(older, newer)]
    assert memory.get(newer) is None and len(memory) == 1
    merged = memory.get(older)
    np.testing.assert_array_equal(merged.keys, np.union1d(left, right))
    assert merged.label == "table" and merged.first_seen == 1.0 and merged.last_seen == 3.0
    assert merged.observations == 3
    assert memory.stats()["merged"] == 1


def test_a_detection_covering_several_small_objects_merges_them_even_without_an_iou_match():
    parts = [box_keys((4 * i, 0, 0), (4 * i + 3, 3, 3)) for i in range(5)]
    memory = ObjectMemory(VOXEL)
    ids = [memory.update([Detection(p)], stamp=float(i))[0] for i, p in enumerate(parts)]
    (whole,) = memory.update([Detection(np.concatenate(parts))], stamp=10.0)  # IoU 0.2 with each
    assert whole == ids[0]
    assert sorted(absorbed for _, absorbed in memory.last_report.merged) == ids[1:]


def test_a_part_nested_in_a_matched_object_is_not_swallowed_when_its_own_mask_is_missing():
    table = box_keys((0, 0, 0), (29, 19, 9))
    mug = box_keys((10, 5, 10), (13, 8, 14))
    table_with_mug = np.union1d(table, mug)
    memory = ObjectMemory(VOXEL)
    t, m = memory.update([Detection(table_with_mug), Detection(mug)], stamp=1.0)
    # this segmentation has the table-with-mug mask but not the mug's own
    assert memory.update([Detection(table_with_mug)], stamp=2.0) == [t]
    assert memory.last_report.merged == [] and memory.get(m).last_seen == 1.0
    assert memory.update([Detection(table_with_mug), Detection(mug)], stamp=3.0) == [t, m]


def test_objects_out_of_view_are_kept_unchanged():
    memory = ObjectMemory(VOXEL)
    mug, bowl = memory.update(
        [Detection(MUG, label="mug"), Detection(BOWL, label="bowl")], stamp=1.0
    )
    before = memory.get(bowl)
    for stamp in (2.0, 3.0, 4.0):
        assert memory.update([Detection(MUG)], stamp=stamp) == [mug]
    after = memory.get(bowl)
    np.testing.assert_array_equal(after.keys, before.keys)
    assert (after.last_seen, after.observations, after.label) == (1.0, 1, "bowl")
    assert memory.get(mug).last_seen == 4.0 and memory.get(mug).label == "mug"


def test_voxels_the_map_evicted_stay_with_their_object():
    memory = ObjectMemory(VOXEL)
    (mug,) = memory.update([Detection(MUG)], stamp=1.0)
    coords = voxel_keys.unpack(MUG)
    near_half = MUG[coords[:, 0] < 3]
    # the map evicted the far half: the segmentation sees only the near half (IoU 0.5)
    present = np.concatenate([near_half, BOWL])
    assert memory.update([Detection(near_half)], stamp=2.0, present_keys=present) == [mug]
    np.testing.assert_array_equal(memory.get(mug).keys, MUG)
    # the far half still in the map but not in the mask any more: the object becomes the mask
    assert memory.update([Detection(near_half)], stamp=3.0, present_keys=MUG) == [mug]
    np.testing.assert_array_equal(memory.get(mug).keys, near_half)


def test_features_keep_the_id_of_an_object_that_moved_a_little_and_only_nearby():
    red, green = unit([1.0, 0.1, 0.0]), unit([0.0, 1.0, 0.2])
    memory = ObjectMemory(VOXEL, neighbourhood=0.10)
    mug, bowl = memory.update([Detection(MUG, red), Detection(BOWL, green)], stamp=1.0)
    # pushed by 8 voxels (16 cm: no voxel in common, boxes 4 cm apart): same feature, same id
    assert memory.update([Detection(shifted(MUG, (8, 0, 0)), red * 3.0)], stamp=2.0) == [mug]
    assert memory.last_report.matched_by_feature == [mug]
    # a different feature next to the bowl is another object
    (other,) = memory.update([Detection(shifted(BOWL, (0, 7, 0)), red)], stamp=3.0)
    assert other not in (mug, bowl)
    # the same feature a metre away is another object too
    (far,) = memory.update([Detection(shifted(BOWL, (0, 50, 0)), green)], stamp=4.0)
    assert far not in (mug, bowl, other)
    np.testing.assert_allclose(np.linalg.norm(memory.get(mug).feature), 1.0, rtol=1e-6)


def test_bad_detections_are_refused_whole_and_change_nothing():
    memory = ObjectMemory(VOXEL)
    memory.update([Detection(MUG, unit([1, 0, 0]))], stamp=1.0)
    before = memory.to_arrays()
    cases = [
        ([Detection(BOWL), Detection(np.zeros(0, dtype=np.int64))], "no voxels"),
        ([Detection(BOWL), Detection(MUG.astype(np.float64))], "integer"),
        ([Detection(np.array([-1, 5]))], "outside the packed"),
        ([Detection(BOWL, np.array([1.0, np.nan, 0.0]))], "NaN"),
        ([Detection(BOWL, np.zeros(3))], "all zeros"),
        ([Detection(BOWL, unit([1, 0, 0, 0]))], "different widths"),
        ([Detection(BOWL, score=float("inf"))], "score"),
        ([BOWL], "not a Detection"),
    ]
    for detections, reason in cases:
        with pytest.raises(ValueError, match=reason):
            memory.update(detections, stamp=2.0)
    with pytest.raises(ValueError, match="stamp"):
        memory.update([Detection(BOWL)], stamp=float("nan"))
    after = memory.to_arrays()
    assert after[1] == before[1]
    for name in before[0]:
        np.testing.assert_array_equal(after[0][name], before[0][name])


def test_overlap_counts_match_a_set_by_set_count():
    rng = np.random.default_rng(0)
    left = [np.unique(rng.integers(0, 400, rng.integers(1, 80))) for _ in range(9)]
    right = [np.unique(rng.integers(0, 400, rng.integers(1, 80))) for _ in range(7)]
    counts = _intersections(left, right)
    expected = [[len(set(a.tolist()) & set(b.tolist())) for b in right] for a in left]
    np.testing.assert_array_equal(counts, expected)
    assert _intersections([], right).shape == (0, 7)


# --- depth frames ------------------------------------------------------------------------------
# A 10 cm cube 1.5 m in front of a camera, and a wall 1 m behind it; 2 cm voxels.
WIDTH, HEIGHT = 160, 120
K = kinect_intrinsics(WIDTH, HEIGHT)
CUBE = box_keys((-3, 75, 22), (1, 79, 26))  # x -6..4 cm, y 1.5..1.6 m, z 44..54 cm
WALL = box_keys((-60, 125, -10), (60, 125, 60))  # the plane y = 2.5 m
TOLERANCE = 2.5 * VOXEL


def camera_pose(x: float) -> np.ndarray:
    return look_at((x, 0.0, 0.5), (0.0, 1.5, 0.5))


def depth_of(keys: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """A depth image rendered from voxels (the map's own renderer), NaN = no reading."""
    return render_voxel_depth(key_centres(keys, VOXEL), VOXEL, K, pose, WIDTH, HEIGHT)


def test_seen_through_and_seen_occupied_follow_the_depth_image():
    pose = camera_pose(0.0)
    cube = key_centres(CUBE, VOXEL)
    without = depth_of(WALL, pose)
    with_cube = depth_of(np.concatenate([WALL, CUBE]), pose)
    through = seen_through(cube, without, K, pose, TOLERANCE)
    assert through.mean() > 0.9 and not seen_occupied(cube, without, K, pose, TOLERANCE).any()
    # with the cube there its front face is seen, its back voxels are hidden: never seen through
    assert not seen_through(cube, with_cube, K, pose, TOLERANCE).any()
    assert seen_occupied(cube, with_cube, K, pose, TOLERANCE).mean() > 0.2
    # behind the wall, out of the image, behind the camera, no reading: nothing is known
    hidden = np.array([[0.0, 2.8, 0.5], [3.0, 1.5, 0.5], [0.0, -1.0, 0.5]])
    assert not seen_through(hidden, without, K, pose, TOLERANCE).any()
    assert not seen_through(cube, np.full_like(without, np.nan), K, pose, TOLERANCE).any()
    assert not seen_through(cube, np.zeros_like(without), K, pose, TOLERANCE).any()
    with pytest.raises(ValueError, match="float metres"):
        seen_through(cube, np.nan_to_num(without * 1000).astype(np.uint16), K, pose, TOLERANCE)
    with pytest.raises(ValueError, match="tolerance"):
        seen_through(cube, without, K, pose, -1.0)
    with pytest.raises(ValueError, match="pose"):
        seen_through(cube, without, K, np.eye(3), TOLERANCE)


def test_an_object_whose_space_is_seen_through_is_retired_after_retire_votes_frames():
    memory = ObjectMemory(VOXEL, retire_votes=3)
    cube, wall = memory.update([Detection(CUBE), Detection(WALL)], stamp=1.0)
    # the cube was taken away: each frame sees the wall through where it stood
    for frame, x in enumerate((-0.1, 0.0, 0.1)):
        pose = camera_pose(x)
        retired = observe_depth_frame(memory, depth_of(WALL, pose), K, pose, TOLERANCE)
        if frame < 2:
            assert retired == [] and memory.get(cube).free_votes == frame + 1
        else:
            assert retired == [cube]
        assert memory.get(wall).free_votes == 0 and wall in memory.last_frame.reset
    assert memory.get(cube) is None and memory.stats()["retired"] == 1


def test_an_object_seen_occupied_is_not_retired_and_its_votes_reset():
    memory = ObjectMemory(VOXEL, retire_votes=3)
    (cube,) = memory.update([Detection(CUBE)], stamp=1.0)
    gone = camera_pose(0.0)
    observe_depth_frame(memory, depth_of(WALL, gone), K, gone, TOLERANCE)
    observe_depth_frame(memory, depth_of(WALL, gone), K, gone, TOLERANCE)
    assert memory.get(cube).free_votes == 2
    # the cube is back in view: a frame sees its surface, the votes start again from zero
    for x in (-0.1, 0.0, 0.1, 0.05):
        pose = camera_pose(x)
        assert (
            observe_depth_frame(
                memory, depth_of(np.concatenate([WALL, CUBE]), pose), K, pose, TOLERANCE
            )
            == []
        )
        assert memory.get(cube).free_votes == 0 and memory.last_frame.reset == [cube]
    # a frame looking away says nothing: votes stay as they are
    observe_depth_frame(memory, depth_of(WALL, gone), K, gone, TOLERANCE)
    away = look_at((0.0, 0.0, 0.5), (0.0, -1.0, 0.5))
    observe_depth_frame(memory, depth_of(WALL, away), K, away, TOLERANCE)
    assert memory.get(cube).free_votes == 1 and memory.last_frame == type(memory.last_frame)(
        [], [], []
    )
    # observe_occupied on its own resets too
    assert (
        memory.observe_occupied(CUBE[: CUBE.shape[0] // 2]) == [cube]
        and memory.get(cube).free_votes == 0
    )


# --- the size bound ----------------------------------------------------------------------------
def test_the_bound_evicts_the_least_recently_observed_first():
    memory = ObjectMemory(VOXEL, max_objects=3)
    cubes = [box_keys((10 * i, 0, 0), (10 * i + 3, 3, 3)) for i in range(6)]
    a, b, c = (
        memory.update([Detection(k)], stamp=float(i + 1))[0] for i, k in enumerate(cubes[:3])
    )
    # a is seen again at t=4 together with a new object: b (last seen at 2) leaves
    assert memory.update([Detection(cubes[0]), Detection(cubes[3])], stamp=4.0)[0] == a
    assert memory.last_report.evicted == [b] and memory.get(b) is None
    # two new ones at t=5: c (3) leaves first, then the t=4 pair's less observed member
    e, f = memory.update([Detection(cubes[4]), Detection(cubes[5])], stamp=5.0)
    assert memory.last_report.evicted[0] == c and len(memory) == 3
    assert set(o.id for o in memory.objects()) == {a, e, f}
    assert memory.stats()["evicted"] == 3 and memory.stats()["created"] == 6


# --- saving ------------------------------------------------------------------------------------
def rich_memory() -> ObjectMemory:
    memory = ObjectMemory(VOXEL, retire_votes=4, max_objects=10)
    memory.update(
        [Detection(MUG, unit([1, 2, 3]), "mug", 0.9), Detection(BOWL, None, "bowl", 0.5)], stamp=1.0
    )
    memory.update([Detection(BOOK, unit([3, 2, 1]), "", 0.1)], stamp=2.0)
    memory.observe_free(BOOK)
    memory.update([Detection(box_keys((50, 0, 0), (53, 3, 3)))], stamp=3.0)
    memory.observe_free(box_keys((50, 0, 0), (53, 3, 3)))
    memory.observe_free(box_keys((50, 0, 0), (53, 3, 3)))
    memory.observe_free(box_keys((50, 0, 0), (53, 3, 3)))
    memory.observe_free(box_keys((50, 0, 0), (53, 3, 3)))  # retired: its id must stay used
    return memory


def test_arrays_round_trip_through_the_map_file(tmp_path):
    memory = rich_memory()
    arrays, meta = memory.to_arrays()
    path = tmp_path / "memory.map"
    map_file.write(path, {"object_memory": meta}, arrays)  # the file's dtypes and a JSON header
    header, read_arrays = map_file.read(path)
    restored = ObjectMemory.from_arrays(read_arrays, header["object_memory"], voxel_size=VOXEL)
    assert restored.settings() == memory.settings() and restored.stats() == memory.stats()
    for original, copy in zip(memory.objects(), restored.objects(), strict=True):
        assert (
            copy.id,
            copy.label,
            copy.score,
            copy.first_seen,
            copy.last_seen,
            copy.observations,
            copy.free_votes,
        ) == (
            original.id,
            original.label,
            original.score,
            original.first_seen,
            original.last_seen,
            original.observations,
            original.free_votes,
        )
        np.testing.assert_array_equal(copy.keys, original.keys)
        assert (copy.feature is None) == (original.feature is None)
        if copy.feature is not None:
            np.testing.assert_array_equal(copy.feature, original.feature)
    # it carries on as the original would: same ids for the same objects, never a used id
    for m in (memory, restored):
        m.update(
            [Detection(MUG, unit([1, 2, 3])), Detection(box_keys((70, 0, 0), (73, 3, 3)))],
            stamp=9.0,
        )
    assert restored.last_report == memory.last_report
    assert restored.last_report.created[0] == 5  # ids 1..4 were given (4 was retired)
    json.dumps(meta)
    assert ObjectMemory.from_arrays(*ObjectMemory(VOXEL).to_arrays()).stats()["objects"] == 0


def _set(arrays, name, value):
    arrays[name] = value


def _swap_keys(arrays):
    keys = arrays["keys"].copy()
    keys[0], keys[1] = keys[1], keys[0]
    arrays["keys"] = keys


def _scale_feature(arrays):
    features = arrays["features"].copy()
    features[0] *= 2
    arrays["features"] = features


CRAFTED = {
    "missing array": (lambda a, m: a.pop("scores"), "must be exactly"),
    "extra array": (lambda a, m: _set(a, "extra", np.zeros(1)), "must be exactly"),
    "wrong dtype": (lambda a, m: _set(a, "ids", a["ids"].astype(np.int32)), "ids must be int64"),
    "ids not increasing": (
        lambda a, m: _set(a, "ids", a["ids"][::-1].copy()),
        "strictly increasing",
    ),
    "id zero": (lambda a, m: _set(a, "ids", a["ids"] - 1), "positive"),
    "next id used": (lambda a, m: m.update(next_id=2), "next_id"),
    "offsets past the keys": (
        lambda a, m: _set(a, "key_offsets", a["key_offsets"] + 1),
        "key_offsets",
    ),
    "an empty object": (
        lambda a, m: _set(a, "key_offsets", np.r_[0, a["key_offsets"][:-1]]),
        "key_offsets",
    ),
    "unsorted keys": (lambda a, m: _swap_keys(a), "strictly increasing"),
    "key out of range": (lambda a, m: _set(a, "keys", -a["keys"] - 1), "outside the packed"),
    "NaN score": (lambda a, m: _set(a, "scores", np.full_like(a["scores"], np.nan)), "NaN"),
    "seen before first seen": (
        lambda a, m: _set(a, "first_seen", a["last_seen"] + 1),
        "last seen before",
    ),
    "no observations": (
        lambda a, m: _set(a, "observations", a["observations"] * 0),
        "observations",
    ),
    "too many votes": (lambda a, m: _set(a, "free_votes", a["free_votes"] + 4), "free_votes"),
    "feature not unit": (lambda a, m: _scale_feature(a), "unit vectors"),
    "wrong feature width": (lambda a, m: m.update(feature_dim=4), "features has shape"),
    "labels short": (lambda a, m: m.update(labels=m["labels"][:-1]), "labels"),
    "label not text": (lambda a, m: m.update(labels=[1] * len(m["labels"])), "labels"),
    "other format": (lambda a, m: m.update(format="sole_ros.voxel_map"), "not an object memory"),
    "newer version": (lambda a, m: m.update(format_version=2), "not supported"),
    "bad setting": (
        lambda a, m: m["settings"].update(overlap_threshold=0.0),
        "settings are invalid",
    ),
    "unknown setting": (lambda a, m: m["settings"].update(colour="red"), "missing or unknown"),
    "more than the bound": (
        lambda a, m: m["settings"].update(max_objects=2),
        "more than its max_objects",
    ),
    "bad counters": (lambda a, m: m["counters"].update(created=-1), "counters"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_arrays_are_refused_with_a_reason(case):
    arrays, meta = rich_memory().to_arrays()
    meta = json.loads(json.dumps(meta))
    craft, reason = CRAFTED[case]
    craft(arrays, meta)
    with pytest.raises(ValueError, match=reason):
        ObjectMemory.from_arrays(arrays, meta)


def test_a_memory_for_another_voxel_size_is_refused():
    arrays, meta = rich_memory().to_arrays()
    with pytest.raises(ValueError, match="does not match the map"):
        ObjectMemory.from_arrays(arrays, meta, voxel_size=0.03)


# --- the real tiny pipeline --------------------------------------------------------------------
TINY = dict(
    model_config="tiny",
    allow_random_weights=True,
    clip_model="sole-tiny",
    clip_pretrained=None,
    device="cpu",
    voxel_size=0.03,
    keyframe_translation=0.0,
    keyframe_rotation_deg=0.0,
)


def test_ids_stay_stable_over_real_segmentations_of_an_unchanged_and_a_growing_map():
    from sole_ros.pipeline import PipelineSettings, build_pipeline
    from sole_ros.synthetic import generate_scene, render_sequence

    scene = generate_scene(seed=2, kind="tabletop", classes=["mug", "bowl", "bottle"])
    frames = list(render_sequence(scene, 4, width=128, height=96, seed=2))
    pipeline = build_pipeline(PipelineSettings(**TINY), log=lambda *_: None)
    for f in frames[:3]:
        pipeline.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=100.0 + f.stamp)
    memory = ObjectMemory(pipeline.map.voxel_size)

    def segment_and_remember(force=False):
        """{mask: sorted ids of the instances with that mask} (a segmentation may repeat a mask)."""
        segmentation = pipeline.segment(force=force)
        snapshot = segmentation.snapshot
        detections = detections_from_instances(pipeline.full_segmentation(), snapshot)
        present = keys_from_centres(snapshot.coords, snapshot.voxel_size)
        ids = memory.update(detections, snapshot.stamp, present_keys=present)
        assert len(set(ids)) == len(ids)  # one segmentation never gives one id twice
        # the map's fused CLIP features pooled over each mask (None for a mask without any)
        assert any(d.feature is not None for d in detections)
        masks: dict[bytes, list[int]] = {}
        for d, object_id in zip(detections, ids):
            masks.setdefault(d.keys.tobytes(), []).append(object_id)
        return {mask: sorted(i) for mask, i in masks.items()}, snapshot.version

    first, version = segment_and_remember()
    known = {o.id for o in memory.objects()}
    assert len(known) >= 2 and memory.last_report.created == sorted(known)
    # segmented again without any change: every instance keeps its id
    second, _ = segment_and_remember(force=True)
    assert second == first and memory.last_report.created == []
    # one more frame of a view already seen (depth only): the map's version moves, not its content
    f = frames[1]
    pipeline.ingest_rgbd(f.depth, f.K, f.pose, stamp=200.0)
    third, third_version = segment_and_remember()
    assert third_version > version
    assert third == first and memory.last_report.created == []
    # one more frame of a new view: the map grows; instances whose mask did not change keep their
    # ids, and every other id is either an object continued or a new one
    f = frames[3]
    pipeline.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=300.0)
    fourth, _ = segment_and_remember()
    for mask, ids in fourth.items():
        if mask in first and len(first[mask]) == len(ids):
            assert ids == first[mask]
    given = {i for ids in fourth.values() for i in ids}
    assert given - set(memory.last_report.created) <= known
    assert all(i > max(known) for i in memory.last_report.created)
    assert len(memory) == len(known) + len(memory.last_report.created) - len(
        memory.last_report.merged
    )
    for mask, ids in fourth.items():  # nothing was evicted: an object is its latest mask
        for object_id in ids:
            np.testing.assert_array_equal(
                memory.get(object_id).keys, np.frombuffer(mask, dtype=np.int64)
            )


def test_identify_names_the_best_overlapping_object_and_follows_changes():
    """identify() answers as a brute-force IoU over every object would, shared voxels included,
    and its index follows updates (a merged or replaced object is no longer named)."""
    rng = np.random.default_rng(5)
    memory = ObjectMemory(voxel_size=VOXEL)
    boxes = [
        box_keys((x, 0, 0), (x + 3, 3, 3)) for x in (0, 2, 10, 20)
    ]  # the first two share voxels
    ids = memory.update([Detection(k) for k in boxes], stamp=1.0)
    for keys, object_id in zip(boxes, ids):
        assert memory.identify(keys) == object_id
    for _ in range(20):
        query = np.unique(
            np.concatenate(
                [
                    rng.choice(k, size=rng.integers(1, k.shape[0]), replace=False)
                    for k in rng.choice(len(boxes), size=2, replace=False).tolist()
                    for k in [boxes[k]]
                ]
            )
        )
        iou = [
            np.intersect1d(query, o.keys).shape[0] / np.union1d(query, o.keys).shape[0]
            for o in memory.objects()
        ]
        best = int(np.argmax(iou))
        expected = memory.objects()[best].id if iou[best] >= memory.overlap_threshold else None
        assert memory.identify(query) == expected
    assert memory.identify(box_keys((50, 50, 50), (52, 52, 52))) is None
    # one detection spanning the first two merges them: the survivor is named for both
    memory.update([Detection(np.union1d(boxes[0], boxes[1]))], stamp=2.0)
    assert memory.identify(boxes[0]) == memory.identify(boxes[1]) == min(ids[:2])


def test_the_map_clears_what_a_frame_sees_through_but_never_a_silhouette():
    voxel_map = VoxelMap(voxel_size=VOXEL, max_voxels=100_000)
    voxel_map.integrate_points(
        key_centres(np.concatenate([WALL, CUBE]), VOXEL), np.eye(4), stamp=1.0
    )
    total, version = voxel_map.num_voxels, voxel_map.version
    # the cube still there, seen from three places: its silhouette voxels project next to pixels
    # of the wall far behind, and must not be carved for that
    for x in (-0.1, 0.0, 0.1):
        pose = camera_pose(x)
        assert (
            voxel_map.clear_seen_through(depth_of(np.concatenate([WALL, CUBE]), pose), K, pose) == 0
        )
    assert voxel_map.num_voxels == total and voxel_map.version == version
    # the cube taken away: the frame sees the wall through where it stood
    pose = camera_pose(0.0)
    cleared = voxel_map.clear_seen_through(depth_of(WALL, pose), K, pose, tolerance=TOLERANCE)
    remaining = keys_from_centres(voxel_map.export().coords, VOXEL)
    assert cleared > 0.8 * len(CUBE) and voxel_map.version == version + 1
    assert np.isin(WALL, remaining).all() and np.isin(CUBE, remaining).mean() < 0.2
    assert voxel_map.stats()["voxels_cleared_free"] == cleared
    with pytest.raises(InvalidInput, match="tolerance"):
        voxel_map.clear_seen_through(depth_of(WALL, pose), K, pose, tolerance=float("nan"))
    with pytest.raises(InvalidInput):
        voxel_map.clear_seen_through(depth_of(WALL, pose), np.eye(3) * 0, pose)
    assert voxel_map.version == version + 1
