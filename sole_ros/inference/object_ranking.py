"""Ranking remembered objects for a phrase without running the network over the whole map.

A class-agnostic segmentation gives every part the decoder's semantic embedding of the query that
produced it (its "mask feature", in CLIP's text space, computed with the generic text key
"object") and the map's fused point CLIP features pooled over its voxels. A phrase then scores
each part as SOLE scores a query: the model branch from the embedding against the phrase and the
learned background (softmax, background dropped), the CLIP branch from the pooled feature against
the same (100 x cosine, softmax), the two combined by the soft geometric mean, times the part's
mean mask probability. Contrast phrases join the softmax and are never answered.

This is an estimate: in SOLE the phrase is also a key of the decoder's cross-attention, which
changes the queries. The pipeline therefore asks SOLE itself (the decoder with the phrase as text
key, on the cached encodings) in the few crops that hold the best estimated parts, and answers
with the estimates only elsewhere (PerceptionPipeline._query_memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sole_ros.inference.scoring import pooled_clip_probs, soft_geometric_mean


@dataclass
class RememberedParts:
    """The parts of one class-agnostic segmentation, each with its stable object id.

    instances: the parts (Instances over the segmented snapshot, with ``embed`` where known);
    features: [n, C] unit pooled point CLIP features, rows of zeros where a part has none."""

    ids: list[int]
    instances: list
    embeds: np.ndarray | None  # [n, D] unit; rows of zeros where a part has none
    features: np.ndarray | None
    has_embed: np.ndarray  # [n] bool
    has_feature: np.ndarray  # [n] bool
    mask_scores: np.ndarray  # [n] each part's score in the class-agnostic segmentation

    @classmethod
    def build(cls, ids, instances, features) -> "RememberedParts":
        """``features``: per part its summed point CLIP feature or None (detections' ``feature``)."""
        embeds, has_embed = _unit_rows([i.embed for i in instances])
        pooled, has_feature = _unit_rows(features)
        scores = np.array([float(i.score) for i in instances], dtype=np.float32)
        return cls(list(ids), list(instances), embeds, pooled, has_embed, has_feature, scores)

    def __len__(self) -> int:
        return len(self.instances)


def _unit_rows(vectors) -> tuple[np.ndarray | None, np.ndarray]:
    """The given vectors (None where absent) as unit rows of one matrix, zeros where absent (None
    when none is given or their widths differ), and which rows are given."""
    present = np.array([v is not None for v in vectors], dtype=bool)
    widths = {np.asarray(v).shape[0] for v in vectors if v is not None}
    if len(widths) != 1:
        return None, np.zeros(len(vectors), dtype=bool)
    rows = np.zeros((len(vectors), widths.pop()), dtype=np.float32)
    for row in np.flatnonzero(present):
        vector = np.asarray(vectors[row], dtype=np.float64)
        norm = np.linalg.norm(vector)
        rows[row] = vector / norm if norm > 0 else vector
    return rows, present


def estimate_scores(
    parts: RememberedParts,
    text: torch.Tensor,
    background: torch.Tensor,
    answered: int,
    scale: float = 100.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Each part's estimated score and the index of its best phrase among the first ``answered``
    columns of ``text`` [T, C] (the rest are contrast phrases). Parts without an embedding score 0."""
    n = len(parts)
    if n == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    text = text.detach().float().cpu()
    background = background.detach().float().cpu()
    if parts.embeds is None or parts.embeds.shape[1] != text.shape[1]:
        return np.zeros(n), np.zeros(n, dtype=np.int64)
    # the decoder's embeddings meet the text as its class head does (pooled_clip_probs' form)
    p_model = pooled_clip_probs(torch.from_numpy(parts.embeds), text, background, scale)
    p = p_model
    if parts.features is not None and parts.features.shape[1] == text.shape[1]:
        p_clip = pooled_clip_probs(torch.from_numpy(parts.features), text, background, scale)
        with_clip = torch.from_numpy(parts.has_feature)[:, None]
        p = torch.where(with_clip, soft_geometric_mean(p_clip, p_model), p_model)
    best_p, best_t = p[:, :answered].max(dim=1)
    scores = (best_p * torch.from_numpy(parts.mask_scores)).numpy()
    scores[~parts.has_embed] = 0.0
    return scores.astype(np.float64), best_t.numpy().astype(np.int64)
