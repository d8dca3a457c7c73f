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

from sole_ros.inference.scoring import model_branch_probs, soft_geometric_mean


@dataclass
class RememberedParts:
    """The parts of one class-agnostic segmentation, each with its stable object id.

    instances: the parts (Instances over the segmented snapshot, with ``embed`` where known);
    features: [n, C] unit pooled point CLIP features, rows of zeros where a part has none."""

    ids: list[int]
    instances: list
    embeds: np.ndarray  # [n, D] unit; rows of zeros where a part has none
    features: np.ndarray | None
    has_embed: np.ndarray  # [n] bool
    has_feature: np.ndarray  # [n] bool

    @classmethod
    def build(cls, ids, instances, features) -> "RememberedParts":
        """``features``: per part its summed point CLIP feature or None (detections' ``feature``)."""
        n = len(instances)
        dims = {np.asarray(i.embed).shape[0] for i in instances if i.embed is not None}
        embeds = np.zeros((n, dims.pop() if len(dims) == 1 else 0), dtype=np.float32)
        has_embed = np.array(
            [i.embed is not None and embeds.shape[1] > 0 for i in instances], dtype=bool
        )
        for row in np.flatnonzero(has_embed):
            embeds[row] = _unit(instances[row].embed)
        pooled = [f for f in features if f is not None]
        has_feature = np.array([f is not None for f in features], dtype=bool)
        stacked = None
        if pooled:
            stacked = np.zeros((n, np.asarray(pooled[0]).shape[0]), dtype=np.float32)
            for row in np.flatnonzero(has_feature):
                stacked[row] = _unit(features[row])
        return cls(
            list(ids),
            list(instances),
            embeds,
            stacked,
            has_embed,
            has_feature & (stacked is not None),
        )

    def __len__(self) -> int:
        return len(self.instances)


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector).astype(np.float32)


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
    embeds = torch.from_numpy(parts.embeds)
    if embeds.shape[1] != text.shape[1]:
        return np.zeros(n), np.zeros(n, dtype=np.int64)
    p_model = model_branch_probs(
        torch.cat([scale * embeds @ text.t(), scale * embeds @ background.t()], dim=-1)
    )
    p = p_model
    if parts.features is not None and parts.features.shape[1] == text.shape[1]:
        pooled = torch.from_numpy(parts.features)
        p_clip = torch.softmax(
            torch.cat([scale * pooled @ text.t(), scale * pooled @ background.t()], dim=-1), dim=-1
        )[:, :-1]
        with_clip = torch.from_numpy(parts.has_feature)[:, None]
        p = torch.where(with_clip, soft_geometric_mean(p_clip, p_model), p_model)
    p = p[:, :answered]
    best_p, best_t = p.max(dim=1)
    mask_scores = torch.tensor([float(i.score) for i in parts.instances])
    scores = (best_p * mask_scores).numpy()
    scores[~parts.has_embed] = 0.0
    return scores.astype(np.float64), best_t.numpy().astype(np.int64)
