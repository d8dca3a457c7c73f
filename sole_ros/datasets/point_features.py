"""Per-point CLIP features saved by OpenScene-style multi-view fusion.

Two layouts exist (facts from the public OpenScene fusion scripts and SOLE's loader):
  * OpenScene: ``<dir>/<scan>_<n>.pt`` holding {"feat": half [M, D], "mask_full": bool [N]}: features
    only for the M points seen by some view (``mask_full`` True, in point order);
  * SOLE's release: ``<dir>/<scan>_0.pt`` holding one tensor [N, D] for every point.
Both load here as float32 [N, D], L2-normalised, zero rows where no view saw the point, plus the
validity mask. Files are read with ``weights_only=True``: plain tensors, never pickled code.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch


def load_point_features(path, num_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict):
        if "feat" not in data or "mask_full" not in data:
            raise ValueError(
                f"{path}: an OpenScene feature file has keys 'feat' and 'mask_full', got {list(data)}"
            )
        mask = data["mask_full"].bool().numpy()
        feat = data["feat"].float().numpy()
        if int(mask.sum()) != len(feat):
            raise ValueError(
                f"{path}: {len(feat)} feature rows for {int(mask.sum())} points marked in mask_full"
            )
        full = np.zeros((len(mask), feat.shape[1]), dtype=np.float32)
        full[mask] = feat
    elif isinstance(data, torch.Tensor) and data.ndim == 2:
        full = data.float().numpy().astype(np.float32)
        mask = np.abs(full).sum(axis=1) > 0
    else:
        raise ValueError(
            f"{path}: expected an OpenScene dict or an [N, D] tensor, got {type(data).__name__}"
        )
    if num_points is not None and len(full) != num_points:
        raise ValueError(f"{path}: features for {len(full)} points, the scene has {num_points}")
    norms = np.linalg.norm(full, axis=1, keepdims=True)
    full = np.where(norms > 0, full / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    return full, mask


class PointFeatureFolder:
    """Looks up ``<folder>/<scan>_<index>.pt`` for a scan; callable as a ProcessedScanNet ``features``."""

    def __init__(self, folder, index: int = 0):
        self.folder = pathlib.Path(folder)
        self.index = index

    def path(self, scan: str) -> pathlib.Path:
        return self.folder / f"{scan}_{self.index}.pt"

    def __call__(self, scan: str, num_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        path = self.path(scan)
        if not path.exists():
            raise FileNotFoundError(f"no point features for {scan}: {path} is missing")
        return load_point_features(path, num_points)


def save_openscene_features(path, features: np.ndarray, valid: np.ndarray) -> None:
    """Write features in OpenScene's layout (half precision rows for the valid points only)."""
    valid = np.asarray(valid, dtype=bool)
    torch.save(
        {
            "feat": torch.from_numpy(np.asarray(features, dtype=np.float32)[valid]).half(),
            "mask_full": torch.from_numpy(valid),
        },
        path,
    )
