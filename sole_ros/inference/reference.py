"""The reference's inference path, written plainly: a check and a baseline for the fast path.

It does what the SOLE evaluation code does for one scene: a full forward pass (backbone, decoder
with auxiliary outputs), the same class probabilities, then *every* query's mask split with
scikit-learn's DBSCAN(eps, min_samples=1), top-k over all (part x phrase) pairs by probability,
score = probability x mean mask probability, sorted. OpenVocabSegmenter.query must give the same
instances; bench/bench_model.py times both. Needs scikit-learn (a test/tool dependency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sole_ros.inference.scoring import class_probabilities
from sole_ros.model.voxel import VoxelScene


@dataclass
class ReferenceInstance:
    query: int
    phrase: int
    voxels: np.ndarray
    score: float


@torch.no_grad()
def reference_instances(
    model, scene: VoxelScene, text: torch.Tensor, eps: float, top_k: int
) -> list[ReferenceInstance]:
    from sklearn.cluster import DBSCAN

    device = model.device
    text = text.to(device)
    out = model([scene], [text])  # full forward, auxiliary outputs included, as in the reference
    masks = out["pred_masks"][0].float().cpu()
    probs = class_probabilities(
        masks.to(device),
        out["pred_logits"][0],
        scene.clip.to(device),
        text,
        model.bg_feature,
        use_clip=scene.has_clip,
        scale=model.config.logit_scale,
    ).cpu()
    raw = scene.raw_coords.numpy().astype(np.float64)

    part_masks, part_probs, part_query = [], [], []
    for q in range(masks.shape[1]):
        positive = masks[:, q] > 0
        if not bool(positive.any()):
            continue
        labels = DBSCAN(eps=eps, min_samples=1, n_jobs=-1).fit(raw[positive.numpy()]).labels_
        cluster = torch.zeros(masks.shape[0], dtype=torch.long)
        cluster[positive] = torch.from_numpy(labels).long() + 1
        for cid in np.unique(labels):
            part_masks.append(masks[:, q] * (cluster == cid + 1))
            part_probs.append(probs[q])
            part_query.append(q)
    if not part_masks:
        return []
    part_masks = torch.stack(part_masks, dim=1)  # [N, parts]
    part_probs = torch.stack(part_probs)  # [parts, T]
    n_phrases = part_probs.shape[1]
    k = min(top_k, part_probs.numel())
    scores_per_pair, flat_index = part_probs.flatten().topk(k, sorted=True)
    phrase = flat_index % n_phrases
    part = flat_index // n_phrases
    chosen = part_masks[:, part]
    binary = (chosen > 0).float()
    mask_scores = (chosen.sigmoid() * binary).sum(0) / (binary.sum(0) + 1e-6)
    scores = scores_per_pair * mask_scores
    order = torch.argsort(scores, descending=True, stable=True)
    return [
        ReferenceInstance(
            query=part_query[int(part[i])],
            phrase=int(phrase[i]),
            voxels=torch.nonzero(binary[:, i]).squeeze(1).numpy(),
            score=float(scores[i]),
        )
        for i in order
    ]
