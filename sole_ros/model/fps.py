"""Farthest point sampling: the query seeds of SOLE (non-parametric queries).

Two samplers:

* ``farthest_point_sample``: a plain greedy sampler (first index of the maximum wins), used with
  the averaged input mode of sole_ros's own checkpoints.
* ``reference_furthest_point_sample``: the seeds exactly as the reference implementation picks
  them. SOLE calls PointNet++'s CUDA ``furthest_point_sample`` on the integer voxel coordinates
  (cast to float32) of the scene, in its voxel order. Integer coordinates make ties of the running
  distance common (most steps on a real scan have several voxels at the same largest distance), so
  the kernel's thread layout and reduction decide which seeds come out. This function reproduces
  those rules with tensor operations (one loop over the seeds, all per-point work vectorised; the
  same code runs on CPU and CUDA tensors).

Rules of that kernel (``furthest_point_sampling_kernel`` with its wrapper; verified by reading its
source and checked in tests/model/test_reference_inputs.py against a literal thread-by-thread simulation):

1. The first seed is index 0. Running distances start at 1e10 (float32).
2. A point with x*x + y*y + z*z <= 1e-3 (for integer coordinates: the voxel at (0, 0, 0)) is
   skipped: its running distance is never updated and it is never chosen, except that a scan
   with no other point returns index 0 (each thread starts from best = -1, index 0).
3. The launch has one block of ``2**floor(log2(n))`` threads, at most 512 (``opt_n_threads``
   computes ``log(n) / log(2)`` in double precision and truncates; that equals floor(log2 n)
   for every n, checked for n < 5000, and above 1023 the cap of 512 applies anyway).
4. Thread t scans k = t, t + B, t + 2B, ... (B the block size); it keeps its first k with the
   largest running distance (the update is ``d2 > best``: strict, so a later equal one loses).
5. The block reduces the per-thread bests with a tree: at strides B/2, B/4, ..., 1 slot t takes
   ``max(v_t, v_{t+s})`` and keeps its own index unless ``v_{t+s} > v_t`` (strict), so a tie
   keeps the lower slot. Unrolled, slot 0 ends with the tied thread whose low bit is 0 if any,
   then among those the one whose next bit is 0, and so on: among the threads holding the maximum,
   the winner is the one with the smallest bit-reversed thread id (log2 B bits). Because thread t
   holds only indices congruent to t modulo B, the chosen index is the eligible index of largest
   distance minimising (bitreverse(k mod B), k).
6. Past the number of distinct points the sequence goes on by the same rules (all distances 0),
   so the number of seeds stays fixed.

Distances are computed in float32 as ``(dx*dx + dy*dy) + dz*dz``; on integer coordinates of
magnitude below 2**10 (20 m at 2 cm voxels) every product and sum is exact, so the choice is the
kernel's whatever the rounding mode or fused multiply-adds of the GPU.
"""

from __future__ import annotations

import torch

KERNEL_MAX_THREADS = 512
KERNEL_START_DISTANCE = 1e10
KERNEL_ORIGIN_EPS = 1e-3


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


def kernel_block_size(n: int) -> int:
    """Threads of the reference kernel's block for n points: 2**floor(log2 n), capped at 512."""
    if n < 1:
        return 1
    return min(1 << (int(n).bit_length() - 1), KERNEL_MAX_THREADS)


def _bit_reverse(values: torch.Tensor, bits: int) -> torch.Tensor:
    out = torch.zeros_like(values)
    for b in range(bits):
        out |= ((values >> b) & 1) << (bits - 1 - b)
    return out


@torch.no_grad()
def reference_furthest_point_sample(xyz: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` seed indices of xyz [N, 3], exactly as the reference's CUDA kernel picks them.

    ``xyz`` should hold the scene's integer voxel coordinates in the reference's voxel order (the
    rules are in the module docstring). Returns int64 indices on xyz's device.
    """
    n = xyz.shape[0]
    if n == 0:
        raise ValueError("farthest point sampling needs at least one point")
    device = xyz.device
    xyz = xyz.to(torch.float32)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    eligible = ((x * x + y * y) + z * z) > KERNEL_ORIGIN_EPS
    block = kernel_block_size(n)
    index = torch.arange(n, device=device, dtype=torch.int64)
    # tie order: the reduction prefers the smallest bit-reversed thread, the thread its first index
    order = _bit_reverse(index % block, block.bit_length() - 1) * n + index
    never = torch.iinfo(torch.int64).max
    order = torch.where(eligible, order, torch.full_like(order, never))
    running = torch.full((n,), KERNEL_START_DISTANCE, dtype=torch.float32, device=device)
    chosen = torch.zeros(max(k, 0), dtype=torch.int64, device=device)
    any_eligible = bool(eligible.any())
    old = torch.zeros((), dtype=torch.int64, device=device)
    for j in range(1, k):
        dx, dy, dz = x - x[old], y - y[old], z - z[old]
        d = (dx * dx + dy * dy) + dz * dz
        running = torch.where(eligible, torch.minimum(d, running), running)
        if not any_eligible:
            continue  # every thread keeps (best -1, index 0)
        best = torch.where(eligible, running, torch.full_like(running, -1.0)).max()
        tied = torch.where(eligible & (running == best), order, torch.full_like(order, never))
        old = torch.argmin(tied)
        chosen[j] = old
    return chosen
