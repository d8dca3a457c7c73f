"""Per-voxel colour: a frame's mean colour per voxel, folded into the running mean the map keeps."""

from __future__ import annotations

import numpy as np

from .voxel_store import VoxelStore

# Colour channels packed into one int64, 21 bits apart: a run of equal keys lies within one image
# row (or one cloud), so its channel sums stay below 2**21 (8,224 points of 255) and one cumulative
# sum serves all three channels.
_CHANNEL_BITS = 21
_MAX_RUN_POINTS = (1 << _CHANNEL_BITS) // 255


def frame_mean_colors(
    rgb: np.ndarray, starts: np.ndarray, run_group: np.ndarray, voxels: int
) -> np.ndarray:
    """Per-voxel mean colour (float32, 0..255) from (N,3) uint8 colours, the start of every run of
    equal keys and the voxel of every run."""
    n = rgb.shape[0]
    ends = np.append(starts[1:], n)
    run_length = ends - starts
    if run_length.max() >= _MAX_RUN_POINTS:  # a huge run (unorganised cloud of one voxel): split it
        extra = [
            np.arange(s + _MAX_RUN_POINTS, e, _MAX_RUN_POINTS)
            for s, e in zip(starts, ends)
            if e - s >= _MAX_RUN_POINTS
        ]
        split = np.concatenate([starts, *extra])
        order = np.argsort(split, kind="stable")
        run_group = np.concatenate(
            [
                run_group,
                np.repeat(run_group[run_length >= _MAX_RUN_POINTS], [len(e) for e in extra]),
            ]
        )[order]
        starts = split[order]
        ends = np.append(starts[1:], n)
        run_length = ends - starts
    packed = rgb[:, 0].astype(np.int64) << (2 * _CHANNEL_BITS)
    packed |= rgb[:, 1].astype(np.int64) << _CHANNEL_BITS
    packed |= rgb[:, 2]
    running = np.cumsum(packed)
    run_sum = running[ends - 1]
    run_sum[1:] -= running[ends[:-1] - 1]
    points = np.bincount(run_group, weights=run_length, minlength=voxels)
    mask = (1 << _CHANNEL_BITS) - 1
    mean = np.empty((voxels, 3), dtype=np.float32)
    for channel, shift in enumerate((2 * _CHANNEL_BITS, _CHANNEL_BITS, 0)):
        mean[:, channel] = (
            np.bincount(run_group, weights=(run_sum >> shift) & mask, minlength=voxels) / points
        )
    return mean


def fold_colors(store: VoxelStore, slots: np.ndarray, colors: np.ndarray) -> None:
    """One more coloured observation of stored voxels: their running mean moves toward ``colors``."""
    count = store.color_count[slots] + 1
    current = store.color[slots]
    store.color[slots] = current + (colors - current) / count[:, None]
    store.color_count[slots] = count


def first_colors(store: VoxelStore, slots: np.ndarray, colors: np.ndarray) -> None:
    """The first coloured observation of voxels just inserted."""
    store.color[slots] = colors
    store.color_count[slots] = 1
