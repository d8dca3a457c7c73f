"""Ranking remembered objects for a phrase (sole_ros/inference/object_ranking.py) and the exact
score of one object from a crop's decoder outputs (regions._best_query_score)."""
from __future__ import annotations

import numpy as np
import torch

from sole_ros.inference.object_ranking import RememberedParts, estimate_scores
from sole_ros.inference.regions import _best_query_score
from sole_ros.inference.segmenter import make_instance


def _part(points, embed, score):
    instance = make_instance(points, np.arange(points.shape[0]), "", score)
    instance.embed = None if embed is None else np.asarray(embed, dtype=np.float32)
    return instance


def test_a_phrase_ranks_parts_by_both_branches_and_never_answers_a_contrast_phrase():
    points = np.zeros((4, 3))
    mug, bowl, other = np.eye(3, dtype=np.float32)
    background = torch.tensor([[0.0, 0.0, 0.3]])
    parts = RememberedParts.build(
        [1, 2, 3, 4],
        [_part(points, mug, 0.9), _part(points, bowl, 0.9), _part(points, mug, 0.5), _part(points, None, 0.9)],
        [mug * 5, bowl * 2, None, mug])  # summed point features, normalised by build
    assert parts.has_embed.tolist() == [True, True, True, False]
    assert parts.has_feature.tolist() == [True, True, False, True]
    text = torch.from_numpy(np.stack([mug, bowl]))  # "mug", then the contrast phrase "bowl"
    scores, phrase = estimate_scores(parts, text, background, answered=1)
    assert phrase.tolist() == [0, 0, 0, 0]  # only the answered phrase is ever named
    # the mug outranks the bowl; the same embedding with a lower mask score ranks lower; a part
    # without an embedding is not ranked
    assert scores[0] > scores[2] > scores[1] and scores[3] == 0.0
    # both branches agree on part 0: p ~ 1, the score is its mask score
    assert abs(scores[0] - 0.9) < 1e-3
    # part 2 has no pooled feature: the model branch alone, as SOLE scores without CLIP features
    p_model = torch.softmax(torch.tensor([100.0, 0.0, 100.0 * 0.0]), 0)[0]
    assert abs(scores[2] - 0.5 * float(p_model)) < 1e-4


def test_an_object_is_scored_by_the_query_whose_mask_covers_it_best():
    # 6 voxels, 3 queries: query 1's mask is the object exactly, query 0 covers part of it and more
    masks = np.full((6, 3), -2.0, dtype=np.float32)
    masks[[0, 1, 2, 3, 4], 0] = 1.0
    masks[[0, 1], 1] = [3.0, 1.0]
    masks[5, 2] = 4.0
    positive = masks > 0
    probs = np.array([[0.9, 0.1], [0.2, 0.6], [0.99, 0.0]])
    score, phrase = _best_query_score(np.array([0, 1]), masks, positive, positive.sum(axis=0), probs)
    sigmoid = 1 / (1 + np.exp(-np.array([3.0, 1.0])))
    assert phrase == 1 and abs(score - 0.6 * sigmoid.sum() / (2 + 1e-6)) < 1e-6
    # an object no mask touches scores 0
    masks[3, :] = -1.0
    positive = masks > 0
    assert _best_query_score(np.array([3]), masks, positive, positive.sum(axis=0), probs) == (0.0, 0)
