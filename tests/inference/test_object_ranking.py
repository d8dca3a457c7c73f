"""Ranking remembered objects for a phrase from their stored embeddings and pooled CLIP features
(sole_ros/inference/object_ranking.py)."""

from __future__ import annotations

import numpy as np
import torch

from sole_ros.inference.object_ranking import RememberedParts, estimate_scores
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
        [
            _part(points, mug, 0.9),
            _part(points, bowl, 0.9),
            _part(points, mug, 0.5),
            _part(points, None, 0.9),
        ],
        [mug * 5, bowl * 2, None, mug],
    )  # summed point features, normalised by build
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
