"""Average pooling from the stride-1 voxels to coarser backbone levels, as sparse matrices.

SOLE pools CLIP features, raw coordinates and (for the attention masks) mask logits with a
MinkowskiEngine average pooling of kernel 2 / stride 2, applied once per halving of resolution.
Repeated averaging is an average of averages, not a plain mean over the fine voxels, so the matrix
here composes the per-step weights: a fine voxel's weight in its ancestor at stride 2^k is the
product over the k steps of 1 / (number of occupied children of the parent at that step).
One sparse matrix per level turns "pool k times" into a single sparse-dense product, which is what
makes a cached scene cheap to decode again and again.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _keys(coords: np.ndarray, lo: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Collision-free int64 keys of integer coordinates within [lo, lo + extent)."""
    c = coords - lo
    return (c[:, 0] * extent[1] + c[:, 1]) * extent[2] + c[:, 2]


def pooling_matrix(fine: np.ndarray, level_coords: np.ndarray, stride: int) -> torch.Tensor:
    """Sparse [M, N] matrix pooling N stride-1 voxels to the M voxels of one coarser level.

    fine: int [N, 3] stride-1 voxel coordinates. level_coords: int [M, 3] the coordinates of the
    backbone map at ``stride`` (multiples of ``stride``) in that map's row order.
    """
    fine = np.asarray(fine, dtype=np.int64)
    n = fine.shape[0]
    lo = fine.min(axis=0)
    extent = fine.max(axis=0) - lo + 1
    weights = np.ones(n)
    prev_inverse = np.arange(
        n
    )  # each fine voxel's voxel at the previous stride (index into uniques)
    step = 1
    while step < stride:
        step *= 2
        anc = np.floor_divide(fine, step) * step
        keys = _keys(anc, lo - step, extent + 2 * step)
        uniq, inverse = np.unique(keys, return_inverse=True)
        inverse = inverse.reshape(-1)
        # children per parent: distinct previous-stride voxels mapped into each parent
        n_prev = prev_inverse.max() + 1
        parent_of_prev = np.empty(n_prev, dtype=np.int64)
        parent_of_prev[prev_inverse] = inverse
        children = np.bincount(parent_of_prev, minlength=uniq.shape[0])
        weights = weights / children[inverse]
        prev_inverse = inverse
    level_coords = np.asarray(level_coords, dtype=np.int64)
    if stride == 1:
        anc = fine
    else:
        anc = np.floor_divide(fine, stride) * stride
    key_lo, key_extent = lo - stride, extent + 2 * stride
    level_keys = _keys(level_coords, key_lo, key_extent)
    order = np.argsort(level_keys)
    fine_keys = _keys(anc, key_lo, key_extent)
    pos = np.searchsorted(level_keys[order], fine_keys)
    pos = np.minimum(pos, len(order) - 1)
    rows = order[pos]
    if not np.array_equal(level_keys[rows], fine_keys):
        raise RuntimeError(f"backbone map at stride {stride} does not cover the input voxels")
    indices = torch.from_numpy(np.stack([rows, np.arange(n)]))
    with warnings.catch_warnings():  # torch flags sparse CSR as beta; the ops used here are stable
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.sparse_coo_tensor(
            indices, torch.from_numpy(weights).float(), (level_coords.shape[0], n)
        )
        return matrix.coalesce().to_sparse_csr()
