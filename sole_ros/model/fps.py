"""Farthest point sampling: the query seeds of SOLE (non-parametric queries)."""
from __future__ import annotations

import torch


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` points of xyz [N, 3], greedily farthest from those already chosen.

    Starts at index 0 like PointNet++'s sampler. When k > N the sequence continues with repeats
    (every remaining distance is 0), so the number of queries stays fixed.
    """
    n = xyz.shape[0]
    if n == 0:
        raise ValueError("farthest point sampling needs at least one point")
    xyz = xyz.float()
    chosen = torch.empty(k, dtype=torch.long, device=xyz.device)
    dist = torch.full((n,), float("inf"), device=xyz.device)
    last = 0
    for i in range(k):
        chosen[i] = last
        d = ((xyz - xyz[last]) ** 2).sum(dim=1)
        dist = torch.minimum(dist, d)
        last = int(torch.argmax(dist))
    return chosen
