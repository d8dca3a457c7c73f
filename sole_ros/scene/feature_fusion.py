"""Per-voxel CLIP features: a view's dense feature grid averaged into the voxels the view sees.

Every stored voxel centre is projected into the image; it takes the feature under it only if the
measured depth at that pixel agrees with the centre's depth within a tolerance, so voxels hidden
behind a nearer surface (or in front of it, i.e. no longer there) get nothing from the view. The
map keeps a running mean per voxel, stored as float16.
"""

from __future__ import annotations

import numpy as np
import torch

from .camera import world_to_camera_columns
from .voxel_store import VoxelStore


def fuse_view_features(
    store: VoxelStore,
    features: torch.Tensor,
    K: np.ndarray,
    depth_m: np.ndarray,
    stride: int,
    image_size: tuple[int, int],
    pose: np.ndarray,
    tolerance: float,
) -> int:
    """Average this view's (h,w,D) feature grid into the voxels it sees; how many took a feature.
    ``depth_m`` and ``K`` may be strided by ``stride``; the grid spans the full ``image_size``."""
    slots = store.live_slots()
    if slots.shape[0] == 0:
        return 0
    index, u, v = surface_in_view(store, slots, K, depth_m, pose, tolerance)
    if index.shape[0] == 0:
        return 0
    # The feature grid spans the full-resolution image; strided pixel u is full pixel stride*u.
    samples = sample_feature_grid(features, u * stride, v * stride, *image_size)
    fold_features(store, slots[index], samples)
    return int(index.shape[0])


def surface_in_view(
    store: VoxelStore,
    slots: np.ndarray,
    K: np.ndarray,
    depth_m: np.ndarray,
    pose: np.ndarray,
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of ``slots`` (their positions in it) lie on the surface the depth image measured,
    and the pixel coordinates (u, v) each projects to."""
    height, width = depth_m.shape
    x, y, z = world_to_camera_columns(*store.centres(slots), pose)
    ahead = np.flatnonzero(z > 1e-3)
    x, y, z = x[ahead], y[ahead], z[ahead]
    u = np.float32(K[0, 0]) * (x / z) + np.float32(K[0, 1]) * (y / z) + np.float32(K[0, 2])
    v = np.float32(K[1, 1]) * (y / z) + np.float32(K[1, 2])
    column = np.floor(u + 0.5).astype(np.int64)
    row = np.floor(v + 0.5).astype(np.int64)
    candidates = np.flatnonzero((column >= 0) & (column < width) & (row >= 0) & (row < height))
    measured = depth_m[row[candidates], column[candidates]]
    with np.errstate(invalid="ignore"):
        agrees = (
            np.isfinite(measured) & (measured > 0) & (np.abs(z[candidates] - measured) <= tolerance)
        )
    seen = candidates[agrees]
    return ahead[seen], u[seen], v[seen]


def fold_features(store: VoxelStore, rows: np.ndarray, samples: torch.Tensor) -> None:
    """One more view of these voxels: their running mean feature moves toward ``samples`` (N,D)."""
    count = store.feature_count[rows] + 1
    store.feature_count[rows] = count
    # Running mean in float32, stored as float16 (torch converts half precision far faster
    # than numpy on CPUs).
    table = torch.from_numpy(store.feature)
    index = torch.from_numpy(rows)
    current = table.index_select(0, index).float()
    current += (samples - current) / torch.from_numpy(count.astype(np.float32)).unsqueeze(1)
    table.index_copy_(0, index, current.half())


def sample_feature_grid(
    features: torch.Tensor, u: np.ndarray, v: np.ndarray, width: int, height: int
) -> torch.Tensor:
    """Bilinearly sample an (h,w,D) feature grid whose cells tile a width x height image at pixel
    coordinates (u, v), clamping at the border: the grid is upsampled to the image only where it
    is looked up. Returns (N,D) float32 on the CPU.

    The four-tap weighted gather runs as one embedding_bag (much faster than grid_sample with a
    channels-first layout for many points and few channels)."""
    grid_h, grid_w, dim = features.shape
    table = features.reshape(grid_h * grid_w, dim).float()
    device = table.device
    # Continuous grid coordinates with cell centres at integers.
    gx = (torch.from_numpy(np.asarray(u, dtype=np.float32)) + 0.5) * (grid_w / width) - 0.5
    gy = (torch.from_numpy(np.asarray(v, dtype=np.float32)) + 0.5) * (grid_h / height) - 0.5
    gx = gx.to(device).clamp_(0, grid_w - 1)
    gy = gy.to(device).clamp_(0, grid_h - 1)
    x0 = gx.floor().clamp_(max=max(grid_w - 2, 0))
    y0 = gy.floor().clamp_(max=max(grid_h - 2, 0))
    fx, fy = gx - x0, gy - y0
    x1 = (x0 + 1).clamp_(max=grid_w - 1).long()
    y1 = (y0 + 1).clamp_(max=grid_h - 1).long()
    x0, y0 = x0.long(), y0.long()
    index = torch.stack(
        [y0 * grid_w + x0, y0 * grid_w + x1, y1 * grid_w + x0, y1 * grid_w + x1], dim=1
    )
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=1)
    sampled = torch.nn.functional.embedding_bag(index, table, per_sample_weights=weight, mode="sum")
    return sampled.cpu()
