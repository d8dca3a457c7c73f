"""Inference: SOLE's formulas against hand-computed values, and the cached segmenter end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sole_ros.inference.reference import reference_instances
from sole_ros.inference.scoring import (
    class_probabilities,
    clip_branch_probs,
    mean_mask_probability,
    model_branch_probs,
    soft_geometric_mean,
)
from sole_ros.inference.segmenter import OpenVocabSegmenter
from sole_ros.model import SoleConfig, SoleModel

# One thread: these networks are small, and on a shared 2-core machine OpenMP threads that wait
# for each other made them ~20x slower.
torch.set_num_threads(1)


# ------------------------------------------------------------------ formulas, by hand
def test_soft_geometric_mean_hand_values():
    p_clip = torch.tensor([[0.8, 0.1], [0.5, 0.5]])
    p_model = torch.tensor([[0.2, 0.4], [0.5, 0.125]])
    p = soft_geometric_mean(p_clip, p_model)
    expected = [
        [0.8 ** (2 / 3) * 0.2 ** (1 / 3), 0.1 ** (1 / 3) * 0.4 ** (2 / 3)],
        [0.5 ** (1 / 3) * 0.5 ** (2 / 3), 0.5 ** (2 / 3) * 0.125 ** (1 / 3)],
    ]
    torch.testing.assert_close(p, torch.tensor(expected), rtol=1e-6, atol=0)
    # equal branches: l = 1/3 and the mean is the common value
    assert p[1, 0].item() == pytest.approx(0.5)
    # 0.5^(2/3) * 0.125^(1/3) = 0.62996 * 0.5
    assert p[1, 1].item() == pytest.approx(0.31498026, rel=1e-6)


def test_model_branch_hand_values():
    logits = torch.tensor(
        [[math.log(2.0), math.log(1.0), math.log(1.0)]]
    )  # phrase A, phrase B, background
    torch.testing.assert_close(model_branch_probs(logits), torch.tensor([[0.5, 0.25]]))


def test_clip_branch_hand_values():
    # two voxels, one query: logits (log 3, 0) -> softmax weights (3/4, 1/4)
    mask_logits = torch.tensor([[math.log(3.0)], [0.0]])
    voxel_clip = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # pooled = (3/4, 1/4) / |.| = (3, 1) / sqrt(10)
    text = torch.tensor([[1.0, 0.0]])
    background = torch.tensor([[0.0, 0.01]])
    p = clip_branch_probs(mask_logits, voxel_clip, text, background, scale=100.0)
    cos_text = 3 / math.sqrt(10)
    dot_bg = 0.01 / math.sqrt(10)
    expected = math.exp(100 * cos_text) / (math.exp(100 * cos_text) + math.exp(100 * dot_bg))
    assert p.shape == (1, 1)
    assert p.item() == pytest.approx(expected, rel=1e-6)


def test_class_probabilities_without_clip_is_the_model_branch():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    p = class_probabilities(
        torch.zeros(4, 1),
        logits,
        torch.zeros(4, 3),
        torch.zeros(2, 3),
        torch.zeros(1, 3),
        use_clip=False,
    )
    torch.testing.assert_close(p, model_branch_probs(logits))


def test_mean_mask_probability_hand_value():
    logits = torch.tensor([0.0, math.log(3.0)])  # sigmoids 0.5 and 0.75
    assert mean_mask_probability(logits) == pytest.approx(1.25 / (2 + 1e-6))


# ------------------------------------------------------------------ the segmenter
def _two_tables_scene(rng, n=2500):
    """Two box-shaped objects on a floor, 1.5 m apart; colours in 0..1 and random CLIP features."""
    floor = np.c_[rng.uniform(0, 3, (n, 2)), np.zeros(n)]
    box1 = rng.uniform([0.3, 0.3, 0.0], [0.7, 0.7, 0.5], (n // 2, 3))
    box2 = rng.uniform([2.2, 2.2, 0.0], [2.6, 2.6, 0.5], (n // 2, 3))
    points = np.concatenate([floor, box1, box2])
    colors = rng.uniform(0, 1, points.shape)
    clip = rng.normal(size=(points.shape[0], 64))
    return points, colors, clip


@pytest.fixture(scope="module")
def segmenter(text_encoder):
    torch.manual_seed(1)
    model = SoleModel(SoleConfig.tiny(voxel_size=0.05, dbscan_eps=0.3))
    seg = OpenVocabSegmenter(model, text_encoder, device="cpu")
    points, colors, clip = _two_tables_scene(np.random.default_rng(2))
    seg.set_scene(points, colors, clip, version=1)
    return seg, points


def test_query_equals_the_reference_path(segmenter, text_encoder):
    seg, _ = segmenter
    phrases = ["table", "chair", "lamp"]
    for top_k in (5, 40, 1000):
        fast = seg.query(phrases, top_k=top_k)
        ref = reference_instances(
            seg.model, seg._scene.scene, text_encoder.encode(phrases), seg.dbscan_eps, top_k
        )
        assert len(fast) == len(ref) > 0
        for f, r in zip(fast, ref):
            assert f.score == pytest.approx(r.score, rel=1e-5)
        key_fast = {(f.query_index, f.label, tuple(f.voxel_indices)) for f in fast}
        key_ref = {(r.query, phrases[r.phrase], tuple(r.voxels)) for r in ref}
        if top_k >= 40:  # (with k = 5 the cut may fall among equally probable parts of one query)
            assert key_fast == key_ref


def test_instances_map_back_to_the_input_points(segmenter):
    seg, points = segmenter
    instances = seg.query(["table"], top_k=10)
    assert instances, "the random network still produces masks"
    scene = seg._scene.scene
    for inst in instances:
        assert inst.label == "table" and 0.0 <= inst.score <= 1.0
        assert inst.num_points == inst.point_indices.shape[0] > 0
        assert set(np.unique(scene.point_to_voxel[inst.point_indices])) == set(
            inst.voxel_indices.tolist()
        )
        pts = points[inst.point_indices]
        np.testing.assert_allclose(inst.centroid, pts.mean(axis=0))
        np.testing.assert_allclose(inst.bbox_center - inst.bbox_size / 2, pts.min(axis=0))
        np.testing.assert_allclose(inst.bbox_center + inst.bbox_size / 2, pts.max(axis=0))
    scores = [i.score for i in instances]
    assert scores == sorted(scores, reverse=True)


def test_min_score_and_top_k(segmenter):
    seg, _ = segmenter
    everything = seg.query(["table", "chair"], top_k=1000)
    threshold = everything[len(everything) // 2].score
    kept = seg.query(["table", "chair"], top_k=1000, min_score=threshold)
    assert kept and all(i.score >= threshold for i in kept)
    assert len(kept) == sum(1 for i in everything if i.score >= threshold)
    assert len(seg.query(["table", "chair"], top_k=3)) == 3


def test_scene_is_encoded_once_per_version(segmenter):
    seg, points = segmenter
    calls = []
    handle = seg.model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        seg.query(["table"])
        seg.query(["sofa", "table"])
        assert calls == []  # queries never touch the backbone
        colors = np.full(points.shape, 0.5)
        assert seg.set_scene(points, colors, None, version=1) is False  # same version: cached
        assert calls == []
    finally:
        handle.remove()


def test_text_embeddings_are_cached(text_encoder):
    counted = []
    handle = text_encoder.clip.model.transformer.register_forward_hook(lambda *a: counted.append(1))
    try:
        a = text_encoder.encode(["mug", "red chair"])
        b = text_encoder.encode(["red  chair", "mug"])  # whitespace is normalised
        assert len(counted) == 1
    finally:
        handle.remove()
    torch.testing.assert_close(a[[1, 0]], b)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))


def test_requests_are_reduced_to_the_object_they_name(text_encoder):
    from sole_ros.model.text import TextEncoder, object_phrase

    assert object_phrase("find the mug") == "mug"
    assert object_phrase("Where is the red box?") == "red box"
    assert object_phrase("bring me an apple") == "apple"
    assert object_phrase("a purple mug") == "purple mug" and object_phrase("mug") == "mug"
    assert object_phrase("the") == "the"  # nothing left: kept as asked
    assert text_encoder.prompt_for("find the mug") == "a mug in a scene."
    torch.testing.assert_close(text_encoder.encode(["find the mug"]), text_encoder.encode(["mug"]))
    # Without a template (captions) the text goes to CLIP exactly as written.
    verbatim = TextEncoder(device="cpu", prompt="{}", loaded=text_encoder.clip)
    assert verbatim.prompt_for("find the mug") == "find the mug"
    assert not torch.allclose(verbatim.encode(["find the mug"]), verbatim.encode(["mug"]))


def test_segment_all(segmenter):
    seg, _ = segmenter
    agnostic = seg.segment_all()
    assert agnostic and all(i.label == "" for i in agnostic)
    # class-agnostic score = mean sigmoid over voxels whose logit is > 0
    assert all(0.5 < i.score <= 1.0 for i in agnostic)
    labelled = seg.segment_all(["table", "chair"])
    assert labelled and {i.label for i in labelled} <= {"table", "chair"}
    # every part of every query is there: more than the top-3 query returns
    assert len(labelled) > len(seg.query(["table", "chair"], top_k=3))


def test_invalid_input_is_rejected(text_encoder):
    model = SoleModel(SoleConfig.tiny())
    seg = OpenVocabSegmenter(model, text_encoder, device="cpu")
    with pytest.raises(ValueError, match="no scene"):
        seg.query(["table"])
    with pytest.raises(ValueError, match="empty"):
        seg.set_scene(np.zeros((0, 3)), np.zeros((0, 3)), None, version=1)
    pts = np.random.default_rng(0).uniform(0, 1, (100, 3))
    with pytest.raises(ValueError, match="colors"):
        seg.set_scene(pts, np.zeros((99, 3)), None, version=1)
    with pytest.raises(ValueError, match="0..1"):
        seg.set_scene(pts, np.full((100, 3), 255.0), None, version=1)
    with pytest.raises(ValueError, match="NaN"):
        bad = pts.copy()
        bad[3, 1] = np.nan
        seg.set_scene(bad, np.zeros((100, 3)), None, version=1)
    with pytest.raises(ValueError, match="clip_features"):
        seg.set_scene(pts, np.zeros((100, 3)), np.zeros((100, 7)), version=1)
    with pytest.raises(ValueError, match="single voxel"):
        seg.set_scene(np.zeros((5, 3)), np.zeros((5, 3)), None, version=1)
    seg.set_scene(pts, np.zeros((100, 3)), None, version=2)
    with pytest.raises(ValueError, match="phrase"):
        seg.query([])
    with pytest.raises(ValueError, match="phrase"):
        seg.query(["  "])
    with pytest.raises(ValueError):
        OpenVocabSegmenter(SoleModel(SoleConfig.tiny(clip_dim=32)), text_encoder, device="cpu")


def test_small_parts_and_duplicate_answers_are_dropped_when_configured():
    from sole_ros.inference.segmenter import (
        Candidate,
        drop_duplicates,
        ranked_candidates,
        split_mask,
    )

    # One query's mask: a 40-voxel object, a 10-voxel object 1 m away and 3 stray voxels 0.5 m away.
    raw = np.concatenate(
        [
            np.c_[np.arange(40) * 0.01, np.zeros((40, 2))],
            np.c_[1 + np.arange(10) * 0.01, np.zeros((10, 2))],
            np.c_[0.5 + np.arange(3) * 0.01, np.ones((3, 2))],
        ]
    )
    logits = np.ones(len(raw))
    assert [len(p) for p in split_mask(logits, raw, 0.05)] == [40, 10, 3]  # SOLE: every part
    assert [len(p) for p in split_mask(logits, raw, 0.05, min_part_fraction=0.2)] == [40, 10]
    assert [len(p) for p in split_mask(logits, raw, 0.05, min_part_fraction=0.5)] == [40]
    # Duplicates: the same object from two queries (IoU 0.9) under one phrase is one answer; under
    # another phrase, or overlapping less, it stays.
    a = Candidate(0, 0, 0.9, np.arange(0, 40), 0.9)
    b = Candidate(1, 0, 0.8, np.arange(0, 36), 0.8)
    c = Candidate(1, 1, 0.7, np.arange(0, 36), 0.7)
    d = Candidate(2, 0, 0.6, np.arange(30, 50), 0.6)
    assert drop_duplicates([a, b, c, d], 53, 0.5) == [a, c, d]
    # Through the ranking: queries 0 and 1 predict the same voxels.
    masks = torch.full((53, 2), -5.0)
    masks[:40, 0] = masks[:36, 1] = 5.0
    probs = torch.tensor([[0.9], [0.8]])
    both = ranked_candidates(masks, probs, raw, 0.05, top_k=10)
    one = ranked_candidates(masks, probs, raw, 0.05, top_k=10, duplicate_iou=0.5)
    assert [c.query for c in both] == [0, 1] and [c.query for c in one] == [0]


def test_masks_split_in_one_call_match_dbscan_per_query():
    """split_masks (every query's mask split in one connected_parts call, as ranking and the full
    segmentation do) gives each query the parts scikit-learn's DBSCAN gives its mask alone."""
    from sklearn.cluster import DBSCAN

    from sole_ros.inference.segmenter import ranked_candidates, split_masks

    rng = np.random.default_rng(5)
    raw = np.round(rng.uniform(0, 1.0, (800, 3)) / 0.02) * 0.02  # voxel centres
    masks_t = rng.normal(-1.5, 1.0, (40, 800))
    for q in range(40):  # blobs of voxels around a seed, as a query's mask is
        masks_t[
            q, np.linalg.norm(raw - raw[rng.integers(800)], axis=1) < rng.uniform(0.05, 0.4)
        ] = 2.0
    masks_t[7] = -1.0  # an empty mask
    for fraction in (0.0, 0.2):
        parts = split_masks(masks_t, range(40), raw, 0.05, fraction)
        for q in range(40):
            voxels = np.flatnonzero(masks_t[q] > 0)
            expected = []
            if voxels.size:
                labels = DBSCAN(eps=0.05, min_samples=1).fit(raw[voxels]).labels_
                counts = np.bincount(labels)
                expected = [
                    voxels[labels == k]
                    for k in range(len(counts))
                    if counts[k] >= fraction * counts.max()
                ]
            assert len(parts[q]) == len(expected), q
            for got, want in zip(parts[q], expected):
                np.testing.assert_array_equal(got, want)
    # ranking splits lazily, a batch of queries at a time: the same answers with one batch or many
    probs = torch.from_numpy(rng.uniform(0, 1, (40, 2))).float()
    masks = torch.from_numpy(masks_t.T.copy()).float()
    import sole_ros.inference.segmenter as segmenter_module

    batched = ranked_candidates(masks, probs, raw, 0.05, top_k=25)
    saved = segmenter_module.SPLIT_BATCH
    try:
        segmenter_module.SPLIT_BATCH = 1
        one_by_one = ranked_candidates(masks, probs, raw, 0.05, top_k=25)
    finally:
        segmenter_module.SPLIT_BATCH = saved
    assert len(batched) == 25
    # and with calls capped at a few hundred voxels (room-sized masks): the same parts
    saved_points = segmenter_module.SPLIT_POINTS
    try:
        segmenter_module.SPLIT_POINTS = 300
        capped = split_masks(masks_t, range(40), raw, 0.05, 0.2)
    finally:
        segmenter_module.SPLIT_POINTS = saved_points
    uncapped = split_masks(masks_t, range(40), raw, 0.05, 0.2)
    assert all(
        len(capped[q]) == len(uncapped[q])
        and all(np.array_equal(a, b) for a, b in zip(capped[q], uncapped[q]))
        for q in range(40)
    )
    assert [(c.query, c.phrase, c.score) for c in batched] == [
        (c.query, c.phrase, c.score) for c in one_by_one
    ]
    assert all(np.array_equal(a.voxels, b.voxels) for a, b in zip(batched, one_by_one))


def test_inference_settings_travel_in_an_exported_checkpoint(tmp_path, text_encoder):
    from sole_ros.training.checkpointing import export_for_inference, save_checkpoint
    from sole_ros.training.config import TrainConfig

    config = SoleConfig.tiny()
    run = save_checkpoint(
        tmp_path / "run.pt", SoleModel(config), config, TrainConfig(model_size="tiny")
    )
    out = export_for_inference(
        run,
        tmp_path / "demo.ckpt",
        dict(dbscan_eps=0.05, min_part_fraction=0.2, duplicate_iou=0.5, top_k=7),
    )
    from sole_ros.training.checkpointing import load_checkpoint

    stored = SoleConfig.from_dict(load_checkpoint(out)["hyper_parameters"]["sole_config"])
    seg = OpenVocabSegmenter(SoleModel(stored), text_encoder, device="cpu")
    assert (seg.dbscan_eps, seg.min_part_fraction, seg.duplicate_iou, seg.top_k) == (
        0.05,
        0.2,
        0.5,
        7,
    )
    with pytest.raises(ValueError, match="not inference settings"):
        export_for_inference(run, tmp_path / "bad.ckpt", dict(hidden_dim=8))


def test_contrast_phrases_compete_but_are_never_answered(segmenter, text_encoder):
    seg, _ = segmenter
    contrasted = OpenVocabSegmenter(
        seg.model,
        text_encoder,
        device="cpu",
        dbscan_eps=seg.dbscan_eps,
        contrast_phrases=["chair", "lamp", "table"],
    )
    contrasted.set_scene(*_two_tables_scene(np.random.default_rng(2)), version=1)
    answers = contrasted.query(["table"], top_k=1000)
    assert answers and {a.label for a in answers} == {"table"}
    # "table" is scored among the contrast phrases (the asked one is not counted twice): the same
    # answers as asking all three and keeping table's.
    among = [a for a in seg.query(["table", "chair", "lamp"], top_k=1000) if a.label == "table"]
    assert [(a.query_index, round(a.score, 6)) for a in answers] == [
        (a.query_index, round(a.score, 6)) for a in among
    ]
    alone = seg.query(["table"], top_k=1000)
    assert max(a.score for a in answers) < max(a.score for a in alone)  # the others took a share
    # per call: the same contrast on the plain segmenter, and none on the contrasted one
    assert [
        a.score for a in seg.query(["table"], top_k=1000, contrast_phrases=["chair", "lamp"])
    ] == [a.score for a in answers]
    assert [a.score for a in contrasted.query(["table"], top_k=1000, contrast_phrases=[])] == [
        a.score for a in alone
    ]
    with pytest.raises(ValueError, match="non-empty"):
        OpenVocabSegmenter(seg.model, text_encoder, device="cpu", contrast_phrases=["mug", " "])


def test_segment_all_drops_duplicate_parts_when_configured(segmenter):
    seg, _ = segmenter
    every = seg.segment_all()
    seg.duplicate_iou = 0.5
    try:
        distinct = seg.segment_all()
    finally:
        seg.duplicate_iou = None
    assert 0 < len(distinct) < len(every)  # random queries repeat each other's masks
    voxel_sets = [set(i.voxel_indices.tolist()) for i in distinct]
    for i, a in enumerate(voxel_sets):
        for b in voxel_sets[:i]:
            assert len(a & b) / len(a | b) < 0.5
