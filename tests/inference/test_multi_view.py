"""Test-time augmentation (sole_ros.inference.multi_view): the views, the merge by hand, and the
wrapped segmenter on a real (tiny, random-weight) model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sole_ros.inference.multi_view import MultiViewSegmenter, merge_views, view_transforms
from sole_ros.inference.segmenter import OpenVocabSegmenter, make_instance
from sole_ros.model import SoleConfig, SoleModel

torch.set_num_threads(1)


def test_view_zero_is_the_scene_scaled_and_the_others_turn_about_z():
    transforms = view_transforms(6, scale=0.65, scale_jitter=0.15, shift=0.02, seed=3)
    assert len(transforms) == 6
    rotation, scale, shift = transforms[0]
    np.testing.assert_array_equal(rotation, np.eye(3))
    assert scale == 0.65 and not shift.any()
    angles = set()
    for rotation, scale, shift in transforms[1:]:
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(rotation[2], [0, 0, 1])  # gravity stays down
        assert 0.65 * 0.85 <= scale <= 0.65 * 1.15
        assert ((0 <= shift) & (shift < 0.02)).all()
        angles.add(round(float(np.arctan2(rotation[1, 0], rotation[0, 0])), 6))
    assert len(angles) == 5
    # the same seed, the same views: answers repeat
    again = view_transforms(6, scale=0.65, scale_jitter=0.15, shift=0.02, seed=3)
    for a, b in zip(transforms, again):
        np.testing.assert_array_equal(a[0], b[0])


def _answer(points, indices, label, score):
    return make_instance(points, np.asarray(indices), label, score)


def test_merge_keeps_what_the_views_agree_on():
    points = np.c_[np.arange(20.0), np.zeros(20), np.zeros(20)]
    views = [
        [
            _answer(points, range(0, 10), "mug", 0.9),
            _answer(points, [15, 16], "mug", 0.8),
            _answer(points, range(2, 10), "mug", 0.2),
        ],  # view 0's weaker duplicate: absorbed, no vote
        [_answer(points, range(1, 11), "mug", 0.6)],
        [_answer(points, range(0, 9), "mug", 0.3), _answer(points, range(0, 10), "bowl", 0.5)],
    ]
    merged = merge_views(views, points, num_views=3)
    assert [(m.label, round(m.score, 6)) for m in merged] == [
        ("mug", 0.6),
        ("mug", round(0.8 / 3, 6)),
        ("bowl", round(0.5 / 3, 6)),
    ]
    # of the three mug answers, all hold points 1..8, two hold 0 and 9, one holds 10
    np.testing.assert_array_equal(merged[0].point_indices, np.arange(0, 10))
    np.testing.assert_allclose(merged[0].centroid, [4.5, 0, 0])
    np.testing.assert_array_equal(merged[1].point_indices, [15, 16])
    # a stricter vote keeps only what every member holds
    strict = merge_views(views, points, num_views=3, vote=1.0)
    np.testing.assert_array_equal(strict[0].point_indices, np.arange(1, 9))
    assert merge_views([[], []], points, num_views=2) == []


def _scene(rng, n=2000):
    floor = np.c_[rng.uniform(0, 2, (n, 2)), np.zeros(n)]
    box = rng.uniform([0.4, 0.4, 0.0], [0.8, 0.8, 0.4], (n // 2, 3))
    points = np.concatenate([floor, box])
    return points, rng.uniform(0, 1, points.shape)


def _base(text_encoder):
    torch.manual_seed(1)
    model = SoleModel(SoleConfig.tiny(voxel_size=0.05, dbscan_eps=0.3))
    return OpenVocabSegmenter(model, text_encoder, device="cpu")


def test_one_unscaled_view_answers_as_the_segmenter_alone(text_encoder):
    base = _base(text_encoder)
    points, colors = _scene(np.random.default_rng(4))
    alone = OpenVocabSegmenter(base.model, text_encoder, device="cpu", dbscan_eps=0.3)
    alone.set_scene(points, colors, None, version=1)
    wrapped = MultiViewSegmenter(base, views=1)
    assert wrapped.set_scene(points, colors, None, version=1) is True
    assert wrapped.set_scene(points, colors, None, version=1) is False  # cached
    single, merged = alone.query(["box"], top_k=20), wrapped.query(["box"], top_k=20)
    assert merged and merged[0].score == pytest.approx(single[0].score)
    np.testing.assert_array_equal(merged[0].point_indices, single[0].point_indices)
    # the merge only joins answers of one object: each merged answer is one of the single pass's
    single_masks = {tuple(s.point_indices) for s in single}
    assert all(tuple(m.point_indices) in single_masks for m in merged)


def test_views_answer_on_the_input_points_in_their_frame(text_encoder):
    points, colors = _scene(np.random.default_rng(5))
    wrapped = MultiViewSegmenter(_base(text_encoder), views=3, scene_scale=0.7, scale_jitter=0.1)
    wrapped.set_scene(points, colors, None, version=7)
    assert wrapped.scene_version == 7
    # each view splits at the scene's 0.3 m, in its own scaled coordinates
    assert [round(v.dbscan_eps / t[1], 9) for v, t in zip(wrapped.views, wrapped.transforms)] == [
        0.3
    ] * 3
    answers = wrapped.query(["box", "floor"], top_k=30)
    assert answers and len(answers) <= 30
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    for a in answers:
        assert a.label in ("box", "floor") and 0.0 < a.score <= 1.0
        inside = points[a.point_indices]
        np.testing.assert_allclose(a.bbox_center - a.bbox_size / 2, inside.min(axis=0))
        np.testing.assert_allclose(a.centroid, inside.mean(axis=0))
    everything = wrapped.segment_all()
    assert everything and all(e.label == "" for e in everything)
    threshold = answers[len(answers) // 2].score
    assert all(
        a.score >= threshold for a in wrapped.query(["box", "floor"], top_k=30, min_score=threshold)
    )


def test_bad_input_is_rejected_and_the_scene_kept(text_encoder):
    with pytest.raises(ValueError, match="views"):
        MultiViewSegmenter(_base(text_encoder), views=0)
    with pytest.raises(ValueError, match="scene_scale"):
        MultiViewSegmenter(_base(text_encoder), scene_scale=0.0)
    wrapped = MultiViewSegmenter(_base(text_encoder), views=2)
    with pytest.raises(ValueError, match="no scene"):
        wrapped.query(["box"])
    points, colors = _scene(np.random.default_rng(6))
    wrapped.set_scene(points, colors, None, version=1)
    before = [a.point_indices.tolist() for a in wrapped.query(["box"], top_k=5)]
    with pytest.raises(ValueError, match="non-empty"):
        wrapped.set_scene(np.zeros((0, 3)), np.zeros((0, 3)), None, version=2)
    with pytest.raises(ValueError, match="colors"):
        wrapped.set_scene(points, colors[:-1], None, version=2)
    with pytest.raises(ValueError, match="phrase"):
        wrapped.query([" "])
    assert wrapped.scene_version == 1
    assert [a.point_indices.tolist() for a in wrapped.query(["box"], top_k=5)] == before
