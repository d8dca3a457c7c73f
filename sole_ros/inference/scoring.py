"""SOLE's open-vocabulary scoring (the paper's inference, arXiv 2404.02157), as plain tensor functions.

* CLIP branch: each query's mask logits, softmaxed over the voxels, weight the voxel CLIP
  features; the pooled feature is normalised and scored 100 x cosine against the text embeddings
  plus the background embedding; softmax; the background column is dropped -> p_clip [Q, T].
* Model branch: softmax of the semantic logits, background dropped -> p_model [Q, T].
* Soft geometric mean: p = p_clip^l * p_model^(1-l), l = 2/3 where p_clip > p_model, else 1/3.
* Instance score = class probability x mean mask probability (sigmoid) over the mask's voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_branch_probs(
    mask_logits: torch.Tensor,
    voxel_clip: torch.Tensor,
    text: torch.Tensor,
    background: torch.Tensor,
    scale: float = 100.0,
) -> torch.Tensor:
    """mask_logits [N, Q], voxel_clip [N, C], text [T, C], background [1, C] -> p_clip [Q, T]."""
    weights = torch.softmax(mask_logits.float().t().contiguous(), dim=1)  # [Q, N], over the voxels
    pooled = F.normalize(weights @ voxel_clip.float(), dim=-1)  # [Q, C]
    return pooled_clip_probs(pooled, text, background, scale)


def pooled_clip_probs(
    pooled: torch.Tensor, text: torch.Tensor, background: torch.Tensor, scale: float = 100.0
) -> torch.Tensor:
    """Unit pooled CLIP features [Q, C] against text [T, C] and background [1, C] -> p_clip [Q, T]."""
    logits = torch.cat(
        [scale * pooled @ text.float().t(), scale * pooled @ background.float().t()], dim=-1
    )
    return torch.softmax(logits, dim=-1)[:, :-1]


def model_branch_probs(semantic_logits: torch.Tensor) -> torch.Tensor:
    """[Q, T + 1] semantic logits (last column: background) -> p_model [Q, T]."""
    return torch.softmax(semantic_logits.float(), dim=-1)[:, :-1]


def soft_geometric_mean(p_clip: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """max^(2/3) * min^(1/3) of the two branches, elementwise."""
    lam = torch.where(
        p_clip > p_model, torch.full_like(p_clip, 2.0 / 3.0), torch.full_like(p_clip, 1.0 / 3.0)
    )
    return torch.pow(p_clip, lam) * torch.pow(p_model, 1.0 - lam)


def class_probabilities(
    mask_logits,
    semantic_logits,
    voxel_clip,
    text,
    background,
    use_clip: bool = True,
    scale: float = 100.0,
) -> torch.Tensor:
    """p [Q, T]: the ensemble of both branches, or the model branch alone without CLIP features."""
    p_model = model_branch_probs(semantic_logits)
    if not use_clip:
        return p_model
    return soft_geometric_mean(
        clip_branch_probs(mask_logits, voxel_clip, text, background, scale), p_model
    )


def mean_mask_probability(part_logits: torch.Tensor) -> float:
    """Mean sigmoid over a part's voxels (all with logit > 0), as the reference computes it."""
    return float(part_logits.float().sigmoid().sum() / (part_logits.shape[0] + 1e-6))
