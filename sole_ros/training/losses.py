"""SOLE's losses and Hungarian matching (the paper, arXiv 2404.02157, and the reference implementation's criterion).

Per scene, with Q queries and K ground-truth instances:
  * mask losses on matched pairs over all voxels: BCE (weight 5) and dice (weight 2), each a mean
    over the scene's matched masks, summed over the scenes of the batch;
  * association losses for MVA, MCA and MEA: logits [Q, K + 1] (100 x cosine to the K targets, plus
    the background embedding column) against one-hot targets (matched queries -> their instance,
    the others -> background): sigmoid focal (alpha 0.25, gamma 2, weight 20) and dice (weight 2),
    each a mean over queries, summed over scenes and the three associations;
  * the same on every auxiliary output, each with its own matching;
  * matching cost: 5 BCE + 2 dice + 2 x (minus the mean of the three softmax probabilities).
There is no class cross-entropy: the "classes" are the scene's own instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

ASSOCIATIONS = ("mva", "mca", "mea")


@dataclass(frozen=True)
class LossWeights:
    mask_bce: float = 5.0
    mask_dice: float = 2.0
    assoc_focal: float = 20.0
    assoc_dice: float = 2.0
    match_class: float = 2.0  # weight of the association probabilities in the matching cost


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row dice loss with +1 smoothing: [R, N] logits and {0,1} targets -> [R]."""
    p = logits.sigmoid()
    return 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Per-row mean of the focal loss (RetinaNet) over the columns: [R, C] -> [R]."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(-1)


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[Q, N] logits x [K, N] targets -> [Q, K] mean BCE of every query mask against every target.

    With BCE(x, 0) = softplus(x) and BCE(x, 1) = softplus(x) - x, the sum over points is
    sum softplus(x) - x . t: one softplus and one matrix product."""
    return (F.softplus(logits).sum(-1)[:, None] - logits @ targets.t()) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid()
    numerator = 2 * p @ targets.t()
    denominator = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


@torch.no_grad()
def hungarian_match(
    mask_logits: torch.Tensor,
    target_masks: torch.Tensor,
    assoc_logits: dict[str, torch.Tensor],
    weights: LossWeights = LossWeights(),
) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, target indices) of the minimum-cost assignment for one scene.

    mask_logits [N, Q] (the model's layout), target_masks [K, N], assoc_logits {name: [Q, K + 1]}.
    """
    logits = mask_logits.t().float()
    targets = target_masks.float()
    cost = weights.mask_bce * pairwise_bce(logits, targets) + weights.mask_dice * pairwise_dice(
        logits, targets
    )
    if assoc_logits:
        probs = torch.stack(
            [logit.float().softmax(-1)[:, :-1] for logit in assoc_logits.values()]
        ).mean(0)
        cost = cost - weights.match_class * probs
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols


def association_logits(
    embeds: torch.Tensor, targets: torch.Tensor, background: torch.Tensor, scale: float = 100.0
) -> torch.Tensor:
    """[Q, D] normalised embeddings vs [K, D] targets and the [1, D] background -> [Q, K + 1]."""
    return torch.cat([scale * embeds @ targets.t(), scale * embeds @ background.t()], dim=-1)


def scene_losses(
    mask_logits: torch.Tensor,
    embeds: torch.Tensor,
    target_masks: torch.Tensor,
    assoc_targets: dict[str, torch.Tensor],
    background: torch.Tensor,
    weights: LossWeights = LossWeights(),
    scale: float = 100.0,
) -> dict[str, torch.Tensor]:
    """Unweighted losses of one output (final or auxiliary) on one scene, after matching."""
    logits = {k: association_logits(embeds, t, background, scale) for k, t in assoc_targets.items()}
    rows, cols = hungarian_match(mask_logits, target_masks, logits, weights)
    rows_t = torch.as_tensor(rows, device=mask_logits.device, dtype=torch.long)
    cols_t = torch.as_tensor(cols, device=mask_logits.device, dtype=torch.long)
    matched = mask_logits[:, rows_t].t().float()  # [M, N]
    target = target_masks[cols_t].float()
    out = {
        "mask_bce": F.binary_cross_entropy_with_logits(matched, target, reduction="none")
        .mean(-1)
        .mean(),
        "mask_dice": dice_loss(matched, target).mean(),
    }
    num_queries = embeds.shape[0]
    focal = dice = mask_logits.new_zeros(())
    for name, logit in logits.items():
        k = logit.shape[1] - 1
        classes = torch.full((num_queries,), k, dtype=torch.long, device=logit.device)
        classes[rows_t] = cols_t
        one_hot = F.one_hot(classes, k + 1).float()
        focal = focal + sigmoid_focal_loss(logit.float(), one_hot).mean()
        dice = dice + dice_loss(logit.float(), one_hot).mean()
        out[f"{name}_accuracy"] = (logit[rows_t].argmax(-1) == cols_t).float().mean().detach()
    out["assoc_focal"] = focal
    out["assoc_dice"] = dice
    return out


def total_loss(
    outputs: dict,
    target_masks: list[torch.Tensor],
    assoc_targets: list[dict[str, torch.Tensor]],
    background: torch.Tensor,
    weights: LossWeights = LossWeights(),
    scale: float = 100.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over the final and every auxiliary output and over the scenes of the batch.

    Returns the loss and logged numbers: the weighted terms of the final output, their totals over
    all outputs, and the association accuracies (argmax of matched queries) of the final output.
    """
    layers = [outputs] + list(outputs.get("aux_outputs", []))
    loss = background.new_zeros(())
    logs: dict[str, float] = {}
    term_weights = {
        "mask_bce": weights.mask_bce,
        "mask_dice": weights.mask_dice,
        "assoc_focal": weights.assoc_focal,
        "assoc_dice": weights.assoc_dice,
    }
    for depth, layer in enumerate(layers):
        for b, (masks, targets) in enumerate(zip(target_masks, assoc_targets)):
            terms = scene_losses(
                layer["pred_masks"][b],
                layer["pred_embeds"][b],
                masks,
                targets,
                background,
                weights,
                scale,
            )
            for name, w in term_weights.items():
                weighted = w * terms[name]
                loss = loss + weighted
                logs[f"all_{name}"] = logs.get(f"all_{name}", 0.0) + float(weighted.detach())
                if depth == 0:
                    logs[name] = logs.get(name, 0.0) + float(weighted.detach())
            if depth == 0:
                for name in ASSOCIATIONS:
                    if f"{name}_accuracy" in terms:
                        logs[f"{name}_accuracy"] = logs.get(f"{name}_accuracy", 0.0) + float(
                            terms[f"{name}_accuracy"]
                        ) / len(target_masks)
    logs["loss"] = float(loss.detach())
    return loss, logs
