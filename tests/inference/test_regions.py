"""Region-wise segmentation (sole_ros/inference/regions.py): the crop grid, re-encoding only the
crops that changed, merging instances across crop borders, and the node's auto mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sole_ros.inference.regions import (
    MERGE_AGREEMENT,
    WHOLE_SCENE,
    Crop,
    PreparedRegions,
    RegionSegmenter,
    crop_cells,
    merge_across_crops,
)
from sole_ros.inference.segmenter import make_instance
from sole_ros.pipeline import (
    PipelineSettings,
    build_pipeline,
    find_default_checkpoint,
    load_segmenter,
)
from sole_ros.synthetic import generate_scene, render_sequence

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


def test_crops_are_cells_of_a_fixed_world_grid_and_overlap():
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-3.0, 5.0, (5000, 2)), rng.uniform(0.0, 2.0, 5000)]
    size, overlap = 2.0, 0.5
    cells = crop_cells(points, size, overlap)
    stride = size - overlap
    held = np.zeros(len(points), dtype=int)
    for (i, j), indices in cells.items():
        assert np.all(np.diff(indices) > 0)
        x, y = points[indices, 0], points[indices, 1]
        assert np.all(
            (x >= i * stride)
            & (x < i * stride + size)
            & (y >= j * stride)
            & (y < j * stride + size)
        )
        held[indices] += 1
    # every point is in one to four crops, and in every crop whose square holds it
    assert held.min() >= 1 and held.max() <= 4
    for k in rng.choice(len(points), 200, replace=False):
        x, y = points[k, :2]
        expected = sum(
            1
            for i in range(-5, 6)
            for j in range(-5, 6)
            if i * stride <= x < i * stride + size and j * stride <= y < j * stride + size
        )
        assert held[k] == expected
    # the grid is the world's: points added far away leave these crops' contents as they were
    grown = np.r_[points, points[:100] + [30.0, 0.0, 0.0]]
    regrown = crop_cells(grown, size, overlap)
    for cell, indices in cells.items():
        assert np.array_equal(regrown[cell], indices)


@pytest.fixture(scope="module")
def tiny_segmenter():
    torch.manual_seed(0)  # random weights, the same every run
    segmenter, _ = load_segmenter(PipelineSettings(**TINY), "cpu", log=lambda *_: None)
    return segmenter


def _room(seed: int, offset) -> tuple[np.ndarray, np.ndarray]:
    scene = generate_scene(seed=seed, kind="tabletop", classes=["mug", "bowl"])
    points, colors = [], []
    for f in render_sequence(scene, 2, width=96, height=72, seed=seed):
        v, u = np.nonzero(f.depth > 0)
        z = f.depth[v, u]
        cam = np.c_[(u - f.K[0, 2]) * z / f.K[0, 0], (v - f.K[1, 2]) * z / f.K[1, 1], z]
        points.append(cam @ f.pose[:3, :3].T + f.pose[:3, 3])
        colors.append(f.color[v, u] / 255.0)
    points = np.concatenate(points)
    keep = np.all(np.abs(points[:, :2] - scene.focus[:2]) < 1.2, axis=1)  # the table and around it
    return points[keep] - [*scene.focus[:2], 0.0] + offset, np.concatenate(colors)[keep]


def test_only_crops_whose_voxels_changed_are_encoded_again(tiny_segmenter):
    """Two rooms 21 m apart, each inside one crop (stride 3.5 m, so cell i holds 3.5 i .. 3.5 i + 4):
    the second segmentation after one room changed encodes that room's crops only and keeps the
    other's encodings as they were; answers index the whole scene."""
    first_room, first_colors = _room(1, [2.0, 2.0, 0.0])
    second_room, second_colors = _room(2, [23.0, 2.0, 0.0])
    points, colors = np.r_[first_room, second_room], np.r_[first_colors, second_colors]
    observations = np.ones(len(points), dtype=np.uint32)
    regions = RegionSegmenter(tiny_segmenter, size=4.0, overlap=0.5)
    before = regions.prepare_scene(points, colors, version=1, observations=observations)
    assert before.encoded == len(before.crops) >= 2
    assert {crop.cell for crop in before.crops} == {(0, 0), (6, 0)}
    regions.use_scene(before)

    seen_again = observations.copy()
    seen_again[len(first_room) :] += 1  # the camera looked at the second room again
    after = regions.prepare_scene(points, colors, version=2, observations=seen_again)
    assert after.encoded == 1
    by_cell = {crop.cell: crop for crop in after.crops}
    old = {crop.cell: crop for crop in before.crops}
    assert (
        by_cell[(0, 0)].prepared is old[(0, 0)].prepared
        and by_cell[(6, 0)].prepared is not old[(6, 0)].prepared
    )
    unchanged = regions.prepare_scene(points, colors, version=3, observations=seen_again)
    assert unchanged.encoded == 0

    regions.use_scene(before)
    parts_before = regions.segment_all()
    regions.use_scene(after)
    decoded = []
    segment_all = tiny_segmenter.segment_all
    tiny_segmenter.segment_all = lambda *a, **k: (
        decoded.append(1) or segment_all(*a, **k)
    )  # counts calls
    try:
        parts = regions.segment_all()
    finally:
        del tiny_segmenter.segment_all
    # only the changed crop was decoded again; the unchanged room gives the parts it gave
    assert len(decoded) == 1

    def in_first_room(instances):
        return [
            tuple(i.point_indices) for i in instances if i.point_indices.max() < len(first_room)
        ]

    assert in_first_room(parts_before) and in_first_room(parts) == in_first_room(parts_before)
    assert parts and all(p.point_indices.max() < len(points) for p in parts)
    answers = regions.query(["mug"], top_k=5)
    assert 0 < len(answers) <= 5 and [a.score for a in answers] == sorted(
        (a.score for a in answers), reverse=True
    )
    for inst in answers:  # boxes are of the whole scene's points
        assert np.allclose(inst.centroid, points[inst.point_indices].mean(axis=0))


def test_encodings_beyond_the_bound_are_released_and_encoded_again_only_when_needed(tiny_segmenter):
    """max_encodings 1 over three rooms of one crop each: once segmented, one encoding is held (the
    newest); segmenting the unchanged map again decodes nothing (the parts are kept); a query over
    every crop encodes the released ones again, one at a time, and the bound holds afterwards; the
    crops a query from the memory may decode are the held ones only."""
    rooms = [_room(seed, [2.0 + 21.0 * k, 2.0, 0.0]) for k, seed in enumerate((1, 2, 3))]
    points, colors = np.concatenate([r[0] for r in rooms]), np.concatenate([r[1] for r in rooms])
    regions = RegionSegmenter(tiny_segmenter, size=4.0, overlap=0.5, max_encodings=1)
    encoded = []
    prepare = tiny_segmenter.prepare_scene
    tiny_segmenter.prepare_scene = lambda *a, **k: (
        encoded.append(1) or prepare(*a, **k)
    )  # counts encodings
    try:
        scene = regions.prepare_scene(points, colors, version=1)
        regions.use_scene(scene)
        assert (
            len(encoded) == 3 and regions.encodings_held() == 3
        )  # the new ones wait for their parts
        parts = regions.segment_all()
        assert parts and regions.encodings_held() == 1
        newest = max(scene.crops, key=lambda crop: crop.encoded_at)
        assert newest.prepared is not None
        again = regions.prepare_scene(points, colors, version=2)
        regions.use_scene(again)
        assert again.encoded == 0 and len(encoded) == 3
        assert [tuple(p.point_indices) for p in regions.segment_all()] == [
            tuple(p.point_indices) for p in parts
        ]
        assert len(encoded) == 3
        held = {crop.cell for crop in again.crops if crop.prepared is not None}
        assert set(regions.cells_holding(parts, max_crops=3)) <= held
        answers = regions.query(["mug"], top_k=5)
        assert answers and len(encoded) == 5 and regions.encodings_held() == 1
    finally:
        del tiny_segmenter.prepare_scene


def test_a_scene_that_fits_one_crop_is_segmented_whole_in_auto_mode(tiny_segmenter):
    room, colors = _room(1, [3.4, 2.0, 0.0])  # across the grid's cell border at x = 3.5 m
    auto = RegionSegmenter(tiny_segmenter, size=4.0, overlap=0.5, whole_when_it_fits=True)
    prepared = auto.prepare_scene(room, colors, version=1)
    assert [crop.cell for crop in prepared.crops] == [WHOLE_SCENE]
    assert np.array_equal(prepared.crops[0].indices, np.arange(len(room)))
    cut = RegionSegmenter(tiny_segmenter, size=4.0, overlap=0.5).prepare_scene(
        room, colors, version=1
    )
    assert len(cut.crops) == 2


def _crop(cell, indices) -> Crop:
    return Crop(cell, np.asarray(indices), b"", None)


def test_an_object_cut_by_a_crop_border_comes_back_as_one():
    """Points 0.1 m apart along x (y = 2 m), crops 6 m wide overlapping by 2 m: crop A holds
    0..59, crop B 40..99, their cores are x 1..5 and 5..9. A long object (15..79) is cut: A sees
    15..59, B sees 40..79; they agree on the overlap and merge, named by A, which saw more of it.
    A small object in the overlap (45..49 in A, 46..50 in B) merges with its twin, not with the
    long object around it. A sliver at A's edge (55..59, outside its core) that B does not confirm
    is dropped; objects that do not agree on the overlap stay apart, as do those of one crop."""
    points = np.c_[np.linspace(0.0, 9.9, 100), np.full(100, 2.0), np.zeros(100)]
    a, b = _crop((0, 0), np.arange(0, 60)), _crop((1, 0), np.arange(40, 100))
    scene = PreparedRegions(1, points, [a, b], 2, size=6.0, overlap=2.0)

    def local(crop, global_indices, score, label="thing"):
        return make_instance(
            points[crop.indices], np.searchsorted(crop.indices, global_indices), label, score
        )

    found = [
        (
            a,
            [
                local(a, np.arange(15, 60), 0.7, "table"),
                local(a, np.arange(45, 50), 0.5),
                local(a, np.arange(10, 20), 0.4),
                local(a, np.arange(20, 24), 0.3),
                local(a, np.arange(55, 60), 0.95),
            ],
        ),
        (
            b,
            [
                local(b, np.arange(40, 80), 0.9, "desk"),
                local(b, np.arange(46, 51), 0.6),
                local(b, np.arange(80, 90), 0.2),
            ],
        ),
    ]
    merged = merge_across_crops(found, scene)
    as_sets = {tuple(m.point_indices): m for m in merged}
    table = as_sets[tuple(range(15, 80))]
    assert table.label == "table" and table.score == 0.7  # A saw more of it (45 points to B's 40)
    assert tuple(range(45, 51)) in as_sets and as_sets[tuple(range(45, 51))].score == 0.6
    assert (
        tuple(range(10, 20)) in as_sets
        and tuple(range(20, 24)) in as_sets
        and tuple(range(80, 90)) in as_sets
    )
    assert tuple(range(55, 60)) not in as_sets
    assert len(merged) == 5 and [m.score for m in merged] == sorted(
        (m.score for m in merged), reverse=True
    )
    assert np.allclose(table.centroid, points[15:80].mean(axis=0))

    # disagreeing on the overlap (3 points in common of 20 there) stays two
    found = [(a, [local(a, np.arange(40, 60), 0.9)]), (b, [local(b, np.arange(57, 80), 0.8)])]
    assert 3 < MERGE_AGREEMENT * 20
    assert len(merge_across_crops(found, scene)) == 2


def test_region_settings_are_checked():
    with pytest.raises(ValueError, match="overlap"):
        RegionSegmenter(None, size=2.0, overlap=1.0)
    with pytest.raises(ValueError, match="size"):
        RegionSegmenter(None, size=float("nan"))
    from sole_ros.settings_table import validate

    assert any(
        "region_overlap" in p
        for p in validate({"segmentation.region_size": 2.0, "segmentation.region_overlap": 1.5})
    )


def test_the_pipeline_segments_by_regions_and_keeps_object_ids(tmp_path):
    """segmentation.mode regions through the pipeline, with the object memory: the parts of a
    map spanning several crops get ids, and segmenting it again keeps every id."""
    p = build_pipeline(
        PipelineSettings(
            **TINY,
            segmentation_mode="regions",
            region_size=1.0,
            region_overlap=0.3,
            object_memory=True,
        ),
        log=lambda *_: None,
    )
    assert isinstance(p.segmenter, RegionSegmenter)
    scene = generate_scene(seed=2, kind="tabletop", classes=["mug", "bowl", "bottle"])
    for f in render_sequence(scene, 4, width=128, height=96, seed=2):
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=1.0 + f.stamp)
    first = p.segment()
    assert len(p.segmenter._require_scene().crops) >= 4
    assert first.objects
    again = p.segment(force=True)
    assert sorted(o for o, _ in again.objects) == sorted(o for o, _ in first.objects)
    answer = p.query(["mug"], max_results=3)
    assert answer.instances and len(answer.object_ids) == len(answer.instances)
    # a reset map seen again the same way is encoded afresh, not from the old map's crops
    p.reset()
    for f in render_sequence(scene, 4, width=128, height=96, seed=2):
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=1.0 + f.stamp)
    p.segment()
    regions = p.segmenter._require_scene()
    assert regions.encoded == len(regions.crops)


def test_a_query_on_a_map_of_many_crops_ranks_remembered_objects_and_decodes_few_crops():
    """With the object memory and more crops than query.decoded_crops, a query runs the decoder on
    at most that many crops (those holding the best remembered parts by their stored embeddings)
    and answers elsewhere with the remembered parts themselves (their points and stable ids); with
    decoded_crops 0 it runs the decoder on every crop, as before."""
    # the demo weights: random ones make one part of everything, with nothing to rank
    demo = dict(
        checkpoint=find_default_checkpoint(),
        device="cpu",
        voxel_size=0.02,
        keyframe_translation=0.0,
        keyframe_rotation_deg=0.0,
    )
    p = build_pipeline(
        PipelineSettings(
            **demo,
            segmentation_mode="regions",
            region_size=1.0,
            region_overlap=0.3,
            object_memory=True,
            decoded_crops=2,
        ),
        log=lambda *_: None,
    )
    scene = generate_scene(seed=2, kind="tabletop", classes=["mug", "bowl", "bottle"])
    for f in render_sequence(scene, 4, width=128, height=96, seed=2):
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=1.0 + f.stamp)
    segmentation = p.segment()
    crops = p.segmenter.crop_count()
    assert crops > 2 and segmentation.remembered is not None
    assert segmentation.remembered.has_embed.all()  # every part carries its query's embedding
    base = p.segmenter.base
    decoded = []
    real_query = base.query

    def counting_query(*args, **kwargs):  # a spy: records which crop the real query ran on
        decoded.append(base._scene)
        return real_query(*args, **kwargs)

    base.query = counting_query
    answer = p.query(["mug"], max_results=20)
    assert 1 <= len(decoded) <= 2
    decoded_cells = {
        crop.cell
        for crop in p.segmenter._require_scene().crops
        if any(crop.prepared is d for d in decoded)
    }
    parts = {object_id: part for object_id, part in segmentation.objects}
    assert answer.instances and len(answer.object_ids) == len(answer.instances)
    remembered_answers = 0
    for object_id, instance in zip(answer.object_ids, answer.instances):
        assert instance.label == "mug" and 0 < instance.score <= 1
        if p.segmenter.core_cell(instance.centroid[:2]) not in decoded_cells:
            # outside the decoded crops an answer is a remembered part, with its id
            assert np.array_equal(instance.point_indices, parts[object_id].point_indices)
            remembered_answers += 1
    assert remembered_answers > 0
    scores = [i.score for i in answer.instances]
    assert scores == sorted(scores, reverse=True)
    decoded.clear()
    p.decoded_crops = 0
    p.query(["mug"], max_results=5)
    assert len(decoded) == crops
