"""Voxelisation of a coloured point cloud (with optional point-wise CLIP features) for SOLE.

Two input modes (``SoleConfig.input_mode``, see docs/ARCHITECTURE.md "Input modes"):

* ``"averaged"`` (sole_ros's own checkpoints): each occupied voxel of side ``voxel_size`` gets the
  mean colour, the mean xyz ("raw coordinates", used for positions and for splitting masks) and
  the mean of the point CLIP features, L2-normalised again. Voxels are ordered lexicographically by
  their integer coordinates, so the result does not depend on the order of the input points.
* ``"reference"`` (published SOLE checkpoints): the reference data pipeline's voxelisation. Each
  voxel takes colour, xyz and CLIP feature of the *first* point that falls in it, in the order the
  points arrive, and the voxels are ordered by their first point (first-occurrence order). That
  order matters: the reference draws its query seeds in it (sole_ros/model/fps.py). The CLIP
  feature is L2-normalised like in the averaged mode (a unit point feature stays as it is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sole_ros.model.config import SoleConfig


@dataclass
class VoxelScene:
    """One scene at voxel resolution; the model's input.

    coords: int32 [V, 3] unique voxel indices; features: float [V, in_channels] normalised RGB;
    raw_coords: float [V, 3] metres; clip: float [V, clip_dim] L2-normalised (zeros where unknown);
    point_to_voxel: int64 [N] voxel of every input point (maps voxel masks back to points);
    has_clip: False when no CLIP features were given (then the CLIP branch is uninformative).
    """

    coords: torch.Tensor
    features: torch.Tensor
    raw_coords: torch.Tensor
    clip: torch.Tensor
    point_to_voxel: np.ndarray
    has_clip: bool = True

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    def to(self, device) -> "VoxelScene":
        return VoxelScene(
            self.coords.to(device),
            self.features.to(device),
            self.raw_coords.to(device),
            self.clip.to(device),
            self.point_to_voxel,
            self.has_clip,
        )


def _segment_mean(
    values: np.ndarray, inverse: torch.Tensor, counts: torch.Tensor, dtype=torch.float64
) -> torch.Tensor:
    """Mean of the rows of ``values`` per voxel (index_add: fast and memory-light for wide rows)."""
    # the map hands out read-only views; torch warns on (and must not share) non-writable memory
    values = torch.from_numpy(np.require(values, requirements="W")).to(dtype)
    sums = torch.zeros((counts.shape[0], values.shape[1]), dtype=dtype).index_add_(
        0, inverse, values
    )
    return sums / counts[:, None].to(dtype)


INPUT_MODES = ("averaged", "reference")


def _first_point_voxels(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coords [V, 3], first [V], inverse [N]) with voxels in the order of their first point:
    ``first[v]`` is the index of voxel v's first point, ``inverse[i]`` the voxel of point i."""
    # np.unique sorts stably when asked for indices, so return_index gives each voxel's first point;
    # one int64 key per point (mixed radix over the occupied box) is much faster than rows
    low = grid.min(axis=0)
    extent = grid.max(axis=0) - low + 1
    if float(extent[0]) * float(extent[1]) * float(extent[2]) < 2.0**62:
        shifted = grid - low
        keys = (shifted[:, 0] * extent[1] + shifted[:, 1]) * extent[2] + shifted[:, 2]
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(grid, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    first = first[order]
    return grid[first], first, rank[inverse.reshape(-1)]


def voxelize(
    points, colors, clip_features, config: SoleConfig, mode: str | None = None
) -> VoxelScene:
    """Validate the inputs and build a VoxelScene; raises ValueError with the reason when invalid.

    ``mode``: "averaged" or "reference" (module docstring); None takes ``config.input_mode``.
    """
    mode = getattr(config, "input_mode", "averaged") if mode is None else mode
    if mode not in INPUT_MODES:
        raise ValueError(f"input mode must be one of {', '.join(INPUT_MODES)}, got {mode!r}")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    n = points.shape[0]
    if n == 0:
        raise ValueError("the scene is empty: no points were given")
    if not np.isfinite(points).all():
        raise ValueError("points contain NaN or infinite coordinates")
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape != (n, 3):
        raise ValueError(f"colors must have shape ({n}, 3) like the points, got {colors.shape}")
    if not np.isfinite(colors).all() or colors.min() < 0.0 or colors.max() > 1.0:
        raise ValueError("colors must be finite RGB values in 0..1")
    if clip_features is not None:
        clip_features = np.asarray(clip_features, dtype=np.float32)
        if clip_features.shape != (n, config.clip_dim):
            raise ValueError(
                f"clip_features must have shape ({n}, {config.clip_dim}), got {clip_features.shape}"
            )
        if not np.isfinite(clip_features).all():
            raise ValueError("clip_features contain NaN or infinite values")

    grid = np.floor(points / config.voxel_size).astype(np.int64)
    if np.abs(grid).max() >= 2**30:
        raise ValueError("points are too far from the origin for this voxel size")
    if mode == "reference":
        coords, first, inverse = _first_point_voxels(grid)
    else:
        coords, inverse, counts = np.unique(grid, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
    if coords.shape[0] < 2:
        raise ValueError("the scene occupies a single voxel; SOLE needs at least two")

    mean = torch.tensor(config.color_mean, dtype=torch.float64)
    std = torch.tensor(config.color_std, dtype=torch.float64)
    if mode == "reference":
        features = (torch.from_numpy(colors[first]) - mean) / std
        raw = torch.from_numpy(points[first])
        if clip_features is not None:
            clip = torch.nn.functional.normalize(
                torch.from_numpy(clip_features[first]).float(), dim=1
            )
        else:
            clip = torch.zeros((coords.shape[0], config.clip_dim))
        return VoxelScene(
            coords=torch.from_numpy(coords.astype(np.int32)),
            features=features.float(),
            raw_coords=raw.float(),
            clip=clip.float(),
            point_to_voxel=inverse.astype(np.int64),
            has_clip=clip_features is not None,
        )

    inverse_t = torch.from_numpy(inverse.astype(np.int64))
    counts_t = torch.from_numpy(counts)
    features = (_segment_mean(colors, inverse_t, counts_t) - mean) / std
    raw = _segment_mean(points, inverse_t, counts_t)
    if clip_features is not None:
        clip = torch.nn.functional.normalize(
            _segment_mean(clip_features, inverse_t, counts_t, torch.float32), dim=1
        )
    else:
        clip = torch.zeros((coords.shape[0], config.clip_dim))
    return VoxelScene(
        coords=torch.from_numpy(coords.astype(np.int32)),
        features=features.float(),
        raw_coords=raw.float(),
        clip=clip.float(),
        point_to_voxel=inverse.astype(np.int64),
        has_clip=clip_features is not None,
    )
