"""ScanNet-style instance AP on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sole_ros.evaluation import (
    SCANNET200_INSTANCE,
    SceneGroundTruth,
    ScenePrediction,
    average_precision,
    evaluate_instances,
    format_table,
    plot_per_class,
    write_csv,
    write_json,
)

CHAIR, TABLE, WALL = 5, 7, 1  # ScanNet20 ids
CLASSES = [CHAIR, TABLE]
NAMES = ["chair", "table"]


def scene(*segments):
    """GT from (label, instance, n_points) segments laid out one after another."""
    labels = np.concatenate([np.full(n, lab) for lab, _, n in segments])
    instances = np.concatenate([np.full(n, inst) for _, inst, n in segments])
    return SceneGroundTruth(labels, instances)


def mask(n_total, *ranges):
    m = np.zeros(n_total, bool)
    for a, b in ranges:
        m[a:b] = True
    return m


def predict(n_total, *preds):
    """preds: (ranges, label, score)."""
    masks = (
        np.stack([mask(n_total, *r) for r, _, _ in preds], axis=1)
        if preds
        else np.zeros((n_total, 0), bool)
    )
    return ScenePrediction(masks, [p[1] for p in preds], [p[2] for p in preds])


def evaluate(pairs, **kw):
    return evaluate_instances(pairs, CLASSES, NAMES, **kw)


def test_perfect_predictions_score_one_everywhere():
    gt = scene((CHAIR, 1, 200), (TABLE, 2, 300), (WALL, 0, 500))
    pred = predict(1000, ([(0, 200)], CHAIR, 0.9), ([(200, 500)], TABLE, 0.8))
    s = evaluate([(gt, pred)]).summary()
    assert s["ap"] == s["ap50"] == s["ap25"] == 1.0
    assert s["agnostic_ap"] == 1.0


def test_iou_of_0_6_counts_up_to_threshold_0_55_only():
    # GT 0..200; prediction 0..120 plus 0 extra: IoU = 120 / 200 = 0.6 exactly -> not above 0.6.
    gt = scene((CHAIR, 1, 200), (WALL, 0, 200))
    pred = predict(400, ([(0, 120)], CHAIR, 0.9))
    rows = evaluate([(gt, pred)]).per_class()
    assert rows["chair"]["ap"] == pytest.approx(2 / 9)  # 0.50 and 0.55 of the nine (0.50 ... 0.90)
    assert rows["chair"]["ap50"] == 1.0 and rows["chair"]["ap25"] == 1.0
    assert np.isnan(rows["table"]["ap"])  # no table anywhere


def test_false_positive_ranked_above_the_true_positive_follows_the_benchmark_integration():
    # PR points (recall, precision): (1, 0.5) at the lower score, (0, 0) at the higher, plus (0, 1):
    # weights are half the recall span between neighbours: 0.5, 0.5, 0 -> AP = 0.25.
    gt = scene((CHAIR, 1, 200), (TABLE, 2, 200))
    pred = predict(400, ([(0, 200)], CHAIR, 0.5), ([(200, 400)], CHAIR, 0.9))
    rows = evaluate([(gt, pred)]).per_class()
    assert rows["chair"]["ap50"] == pytest.approx(0.25)
    # Ranked below, the false positive costs nothing.
    pred = predict(400, ([(0, 200)], CHAIR, 0.9), ([(200, 400)], CHAIR, 0.5))
    assert evaluate([(gt, pred)]).per_class()["chair"]["ap50"] == pytest.approx(1.0)
    # The table has ground truth and no prediction: 0, and the class mean includes it.
    assert evaluate([(gt, pred)]).per_class()["table"]["ap50"] == 0.0
    assert evaluate([(gt, pred)]).summary()["ap50"] == pytest.approx(0.5)


def test_missed_instance_halves_recall_and_duplicates_are_false_positives():
    gt = scene((CHAIR, 1, 200), (CHAIR, 2, 200))
    one_found = predict(400, ([(0, 200)], CHAIR, 0.8))
    assert evaluate([(gt, one_found)]).per_class()["chair"]["ap50"] == pytest.approx(0.5)
    # A duplicate of the found chair scored higher than the original: the best score is the TP,
    # the lower one a false positive ranked last, so AP stays 0.5.
    dup = predict(400, ([(0, 200)], CHAIR, 0.8), ([(0, 190)], CHAIR, 0.7))
    assert evaluate([(gt, dup)]).per_class()["chair"]["ap50"] == pytest.approx(0.5)


def test_predictions_on_ignored_points_and_tiny_predictions_are_not_false_positives():
    gt = scene((CHAIR, 1, 200), (WALL, 0, 500), (CHAIR, 3, 50))
    pred = predict(
        750,
        ([(0, 200)], CHAIR, 0.5),
        ([(200, 700)], CHAIR, 0.9),  # all on the wall (void): ignored
        ([(700, 750), (200, 260)], CHAIR, 0.95),  # the too-small chair plus wall: ignored
        ([(0, 60)], CHAIR, 0.99),
    )  # under 100 points: dropped
    result = evaluate([(gt, pred)])
    assert result.per_class()["chair"]["ap"] == pytest.approx(1.0)
    assert result.per_class()["chair"]["gt_instances"] == 1
    # Mostly on an evaluated object of another class, it is a real false positive: a table
    # prediction over the chair, ranked above the true table, costs the table class (AP 0.25).
    gt = scene((CHAIR, 1, 200), (WALL, 0, 500), (TABLE, 2, 200))
    pred = predict(900, ([(700, 900)], TABLE, 0.5), ([(0, 150), (200, 260)], TABLE, 0.9))
    assert evaluate([(gt, pred)]).per_class()["table"]["ap50"] == pytest.approx(0.25)


def test_wrong_class_is_zero_per_class_but_right_class_agnostic():
    gt = scene((CHAIR, 1, 200), (TABLE, 2, 300))
    pred = predict(500, ([(0, 200)], TABLE, 0.9), ([(200, 500)], CHAIR, 0.8))
    result = evaluate([(gt, pred)])
    s = result.summary()
    assert s["ap"] == 0.0 and s["agnostic_ap"] == 1.0


def test_scenes_are_pooled_before_ranking():
    gt = scene((CHAIR, 1, 200), (WALL, 0, 200))
    found = predict(400, ([(0, 200)], CHAIR, 0.9))
    missed = predict(400, ([(200, 400)], TABLE, 0.9))
    rows = evaluate([(gt, found), (gt, missed)]).per_class()
    assert rows["chair"]["ap50"] == pytest.approx(0.5)
    assert rows["chair"]["gt_instances"] == 2


def test_head_common_tail_average_their_own_classes():
    ids = dict(zip(SCANNET200_INSTANCE.names, SCANNET200_INSTANCE.ids))
    gt = scene((ids["chair"], 1, 200), (ids["bottle"], 2, 200), (ids["cup"], 3, 200))
    pred = predict(600, ([(0, 200)], ids["chair"], 0.9), ([(400, 600)], ids["cup"], 0.8))
    result = evaluate_instances(
        [(gt, pred)],
        SCANNET200_INSTANCE.ids,
        SCANNET200_INSTANCE.names,
        splits=SCANNET200_INSTANCE.splits,
    )
    s = result.summary()
    assert (s["head_ap"], s["common_ap"], s["tail_ap"]) == (1.0, 0.0, 1.0)
    assert s["ap"] == pytest.approx(2 / 3)
    assert len(SCANNET200_INSTANCE.ids) == 198 and "wall" not in SCANNET200_INSTANCE.names


def _benchmark_ap_by_loops(scores, is_tp, missed):
    """An independent, literal version of the benchmark's curve: one PR point per distinct score
    (from the lowest), plus (0, 1); precision weighted by half the recall gap of its neighbours."""
    points = []
    for t in sorted(set(scores)):
        tp = sum(1 for s, y in zip(scores, is_tp) if s >= t and y)
        fp = sum(1 for s, y in zip(scores, is_tp) if s >= t and not y)
        points.append((tp / (sum(is_tp) + missed), tp / (tp + fp)))
    points.append((0.0, 1.0))
    total = 0.0
    for i, (_, p) in enumerate(points):
        left = points[i - 1][0] if i > 0 else points[0][0]
        right = points[i + 1][0] if i + 1 < len(points) else 0.0
        total += p * (left - right) / 2
    return total


def test_average_precision_agrees_with_a_literal_loop_version():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        scores = np.round(rng.random(n), 1)  # ties on purpose
        is_tp = rng.random(n) < 0.5
        missed = int(rng.integers(0, 5))
        if is_tp.sum() + missed == 0:
            continue
        assert average_precision(scores, is_tp, missed) == pytest.approx(
            _benchmark_ap_by_loops(list(scores), list(is_tp), missed)
        )


def test_ap25_of_a_prediction_spanning_two_instances_follows_the_benchmark_script():
    """Two chairs g1 (points 0-199) and g2 (200-399); predictions g1 at 0.9, g1+g2 at 0.8, g2 at 0.6.
    The 0.8 mask has IoU 0.5 with each chair: above 0.25, not above 0.5, so only AP25 sees it.

    "scannet" (the benchmark script's loop, predictions best score first): g1 takes the 0.9 mask
    (TP); the 0.8 mask is a duplicate on g1 (FP 0.8) but stays free; g2 then takes it (TP 0.8) and
    the 0.6 mask is a duplicate (FP 0.6). Detections: TP 0.9, FP 0.8, TP 0.8, FP 0.6; 2 GT.
    PR points, lowest score first: >= 0.6: 2 TP of 4 (r 1, p 1/2); >= 0.8: 2 of 3 (r 1, p 2/3);
    >= 0.9: 1 of 1 (r 1/2, p 1); then (r 0, p 1). Recalls padded 1 | 1, 1, 1/2, 0 | 0, weights half
    the span between neighbours: 0, 1/4, 1/2, 1/4.
    AP25 = 1/2 x 0 + 2/3 x 1/4 + 1 x 1/2 + 1 x 1/4 = 11/12 = 0.9167.

    "exclusive": g1 consumes the 0.9 (TP) and 0.8 (FP) masks; g2 is left the 0.6 one (TP).
    Detections: TP 0.9, FP 0.8, TP 0.6. PR: >= 0.6: 2 of 3 (r 1, p 2/3); >= 0.8: 1 of 2 (r 1/2,
    p 1/2); >= 0.9: 1 of 1 (r 1/2, p 1); then (r 0, p 1). Recalls padded 1 | 1, 1/2, 1/2, 0 | 0,
    weights 1/4, 1/4, 1/4, 1/4. AP25 = (2/3 + 1/2 + 1 + 1) / 4 = 19/24 = 0.7917.
    """
    gt = scene((CHAIR, 1, 200), (CHAIR, 2, 200))
    pred = predict(
        400, ([(0, 200)], CHAIR, 0.9), ([(0, 400)], CHAIR, 0.8), ([(200, 400)], CHAIR, 0.6)
    )
    official = evaluate([(gt, pred)])
    assert official.matching == "scannet"  # the default
    assert official.per_class()["chair"]["ap25"] == pytest.approx(11 / 12)
    assert round(official.per_class()["chair"]["ap25"], 4) == 0.9167
    exclusive = evaluate([(gt, pred)], matching="exclusive")
    assert exclusive.per_class()["chair"]["ap25"] == pytest.approx(19 / 24)
    assert round(exclusive.per_class()["chair"]["ap25"], 4) == 0.7917
    # IoU above 0.5 with two disjoint instances is impossible: AP50 and AP agree under both rules.
    for key in ("ap", "ap50"):
        assert official.per_class()["chair"][key] == exclusive.per_class()["chair"][key]
    # Predictions are walked best score first, whatever order they are given in.
    assert evaluate(
        [
            (
                gt,
                predict(
                    400,
                    ([(200, 400)], CHAIR, 0.6),
                    ([(0, 400)], CHAIR, 0.8),
                    ([(0, 200)], CHAIR, 0.9),
                ),
            )
        ]
    ).per_class()["chair"]["ap25"] == pytest.approx(11 / 12)
    assert "matching rule: scannet" in format_table(official)
    with pytest.raises(ValueError, match="matching"):
        evaluate([(gt, pred)], matching="greedy")


def _scannet_detections_by_loops(gt_masks, pred_masks, scores, threshold):
    """The benchmark script's matching for one class and scene, as plain loops over
    (ground truth, prediction) pairs: ground truth in order, its predictions best score first; a
    prediction above the threshold that is free becomes the instance's true positive (and is no
    longer free) unless the instance has one already, then it is a false positive and stays free.
    A prediction above the threshold on no instance is a false positive (no ignored points here).
    Returns (scores, is_tp, missed)."""
    order = sorted(range(len(scores)), key=lambda p: -scores[p])
    taken = [False] * len(scores)
    out_scores, out_tp, missed = [], [], 0
    for g in gt_masks:
        matched = False
        for p in order:
            inter = int(np.sum(g & pred_masks[p]))
            iou = inter / (int(g.sum()) + int(pred_masks[p].sum()) - inter)
            if taken[p] or iou <= threshold:
                continue
            if matched:
                out_scores.append(scores[p])
                out_tp.append(False)
            else:
                matched, taken[p] = True, True
                out_scores.append(scores[p])
                out_tp.append(True)
        missed += not matched
    for p in range(len(scores)):
        ious = [int(np.sum(g & pred_masks[p])) / int(np.sum(g | pred_masks[p])) for g in gt_masks]
        if not any(iou > threshold for iou in ious):
            out_scores.append(scores[p])
            out_tp.append(False)
    return out_scores, out_tp, missed


def test_scannet_matching_agrees_with_a_literal_loop_version_on_random_scenes():
    rng = np.random.default_rng(3)
    for _ in range(40):
        sizes = rng.integers(100, 300, size=rng.integers(1, 5))
        gt = scene(*[(CHAIR, i + 1, int(n)) for i, n in enumerate(sizes)])
        n = int(sizes.sum())
        starts = np.concatenate([[0], np.cumsum(sizes)])
        gt_masks = [mask(n, (a, b)) for a, b in zip(starts[:-1], starts[1:])]
        preds = []
        for _ in range(rng.integers(1, 7)):  # runs of points that often span two chairs
            a = int(rng.integers(0, n - 100))
            b = int(min(n, a + rng.integers(100, 500)))
            preds.append(
                ([(a, b)], CHAIR, float(rng.choice([0.3, 0.5, 0.7, 0.9]) + rng.random() * 0.05))
            )
        prediction = predict(n, *preds)
        result = evaluate([(gt, prediction)])
        for t_i, threshold in enumerate(result.thresholds):
            det = _scannet_detections_by_loops(
                gt_masks, list(prediction.masks.T), list(prediction.scores), threshold
            )
            expected = average_precision(np.array(det[0]), np.array(det[1], dtype=bool), det[2])
            assert result.ap[0, t_i] == pytest.approx(expected, abs=1e-12)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError):
        ScenePrediction(np.zeros((10, 2), bool), [1], [0.5, 0.4])
    gt = scene((CHAIR, 1, 200))
    with pytest.raises(ValueError):
        evaluate([(gt, predict(100, ([(0, 100)], CHAIR, 0.9)))])


def test_table_csv_json_and_plot(tmp_path):
    gt = scene((CHAIR, 1, 200), (TABLE, 2, 300))
    pred = predict(500, ([(0, 200)], CHAIR, 0.9))
    result = evaluate([(gt, pred)])
    table = format_table(result)
    assert "chair" in table and "100.0" in table and "class-agnostic" in table
    write_csv(result, tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().splitlines()[1].startswith("chair,5,1.0")
    write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["ap50"] == pytest.approx(0.5)
    assert json.loads((tmp_path / "r.json").read_text())["matching"] == "scannet"
    plot_per_class(result, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ query top-1
def test_query_top1_hits_need_the_named_class_at_iou_one_half():
    from sole_ros.evaluation import QueryTop1, classes_present, top1_hit

    gt = scene((WALL, 0, 100), (CHAIR, 1, 200), (CHAIR, 2, 200), (TABLE, 3, 300), (TABLE, 4, 20))
    # Tables are present (instance 3); a 20-point table alone would be below the region size.
    assert classes_present(gt, CLASSES, min_region_size=100) == [CHAIR, TABLE]
    assert classes_present(scene((TABLE, 4, 20)), CLASSES, min_region_size=100) == []
    # The second chair exactly, and half of it plus nothing else (IoU 0.5): hits.
    assert top1_hit(gt, CHAIR, mask(820, (300, 500)))
    assert top1_hit(gt, CHAIR, mask(820, (300, 400)))
    # Both chairs in one answer (IoU 0.5 with each... 200/400): still the right object at 0.5.
    assert top1_hit(gt, CHAIR, mask(820, (100, 500)))
    # A chair plus the wall: IoU 200/300 -> hit; a third of a chair (IoU 0.33): miss.
    assert top1_hit(gt, CHAIR, mask(820, (0, 300)))
    assert not top1_hit(gt, CHAIR, mask(820, (100, 166)))
    # The table's points when asking for a chair, an empty answer, no answer: misses.
    assert not top1_hit(gt, CHAIR, mask(820, (500, 800)))
    assert not top1_hit(gt, CHAIR, np.zeros(820, bool))
    assert not top1_hit(gt, CHAIR, None)
    tally = QueryTop1()
    for name, hit in (("chair", True), ("chair", False), ("table", True), ("table", True)):
        tally.add(name, hit)
    assert (tally.hits, tally.queries, tally.accuracy) == (3, 4, 0.75)
    assert tally.as_dict()["per_class"]["chair"] == {"hits": 1, "queries": 2}


def test_query_top1_goes_into_the_summary_table_and_json(tmp_path):
    from sole_ros.evaluation import QueryTop1

    gt = scene((CHAIR, 1, 200), (TABLE, 2, 300))
    result = evaluate([(gt, predict(500, ([(0, 200)], CHAIR, 0.9)))])
    assert "query_top1" not in result.summary()
    result.query_top1 = QueryTop1()
    result.query_top1.add("chair", True)
    result.query_top1.add("table", False)
    assert result.summary()["query_top1"] == 0.5
    assert "query top-1 accuracy, asked alone (IoU >= 0.5): 50.0% (1/2)" in format_table(result)
    assert "contrast" not in format_table(result)
    result.query_top1_contrast = QueryTop1()
    result.query_top1_contrast.add("chair", True)
    assert result.summary()["query_top1_contrast"] == 1.0
    assert "other class names as contrast phrases (IoU >= 0.5): 100.0% (1/1)" in format_table(
        result
    )
    write_json(result, tmp_path / "r.json")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["query_top1"]["hits"] == 1 and payload["query_top1_contrast"]["queries"] == 1


def test_class_agnostic_ap_can_rank_the_models_own_class_agnostic_segmentation():
    gt = scene((CHAIR, 1, 200), (TABLE, 2, 300))
    # Labelled: the chair's mask is only proposed as "table", ranked below a wrong mask.
    labelled = predict(
        500, ([(0, 100)], CHAIR, 0.9), ([(0, 200)], TABLE, 0.5), ([(200, 500)], TABLE, 0.8)
    )
    # Class-agnostic segmentation: both masks, ranked above the fragment; its labels do not count.
    unlabelled = predict(500, ([(0, 200)], 0, 0.95), ([(200, 500)], 0, 0.9), ([(0, 100)], 0, 0.3))
    assert evaluate([(gt, labelled)]).summary()["agnostic_ap50"] < 1.0
    assert (
        evaluate([(gt, labelled)], agnostic_predictions=[unlabelled]).summary()["agnostic_ap50"]
        == 1.0
    )
    # per-class AP still comes from the labelled predictions
    assert evaluate([(gt, labelled)], agnostic_predictions=[unlabelled]).summary()["ap50"] < 1.0
    with pytest.raises(ValueError, match="2 class-agnostic predictions for 1 scenes"):
        evaluate([(gt, labelled)], agnostic_predictions=[unlabelled, unlabelled])


def test_class_agnostic_ap_counts_a_mask_proposed_under_several_names_once():
    gt = scene((CHAIR, 1, 200), (TABLE, 2, 300))
    # The chair's mask is proposed as chair (0.9) and as table (0.7); the table's mask only at 0.8.
    # Per class the 0.7 table-labelled chair mask is a false positive; class-agnostic it is the
    # same proposal as the 0.9 one, so both objects are found with nothing ranked between them.
    pred = predict(
        500, ([(0, 200)], CHAIR, 0.9), ([(0, 200)], TABLE, 0.85), ([(200, 500)], TABLE, 0.8)
    )
    s = evaluate([(gt, pred)]).summary()
    assert s["agnostic_ap50"] == 1.0
    assert s["ap50"] < 1.0  # the table class ranks the wrong mask first
    distinct = pred.distinct_masks(CLASSES)
    assert distinct.masks.shape[1] == 2 and sorted(distinct.scores) == [0.8, 0.9]
    assert sorted(pred.distinct_masks([TABLE]).scores) == [0.8, 0.85]  # only the labels asked for


def test_coverage_counts_objects_any_mask_covers_whatever_the_ranking():
    """Chair 1 (points 0-99) is covered by a low-scored mask at IoU 0.8; chair 2 (100-199) only at
    IoU 0.4; the table (200-399) exactly; the wall is not a scored class and the 10-point chair is
    under the minimum region. Coverage at 0.5: 2 of 3, though AP50 ranks the good chair mask last."""
    from sole_ros.evaluation import best_iou_per_object, coverage

    gt = scene((CHAIR, 1, 100), (CHAIR, 2, 100), (TABLE, 3, 200), (WALL, 4, 50), (CHAIR, 5, 10))
    n = 460
    prediction = predict(
        n,
        ([(0, 80)], CHAIR, 0.1),
        ([(100, 140)], CHAIR, 0.9),
        ([(200, 400)], TABLE, 0.8),
        ([(400, 450)], CHAIR, 0.95),
    )
    best = best_iou_per_object(gt, prediction, CLASSES, min_region_size=30)
    assert best == pytest.approx([0.8, 0.4, 1.0])
    assert coverage([(gt, prediction)], CLASSES, min_region_size=30) == pytest.approx(2 / 3)
    assert coverage(
        [(gt, prediction)], CLASSES, iou_threshold=0.3, min_region_size=30
    ) == pytest.approx(1.0)
    # no predictions: nothing covered; no objects: undefined
    assert coverage([(gt, predict(n))], CLASSES, min_region_size=30) == 0.0
    assert np.isnan(coverage([(scene((WALL, 1, 50)), predict(50))], CLASSES))
