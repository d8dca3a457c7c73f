"""From a SceneSample to what one training step needs: the voxelised scene, voxel-level instance
masks and the association targets.

Voxel labels: every voxel takes the instance most of its points belong to (points without an
instance vote too, so a voxel mostly on the floor stays background).
Augmentation (training only; a subset of the reference's): elastic distortion (as the reference:
with probability 0.95, smooth random displacement fields at granularity/magnitude 0.2/0.4 and
0.8/1.6 in units of the voxel grid's metres), random rotation about z, mirroring of x and y,
scaling 0.9-1.1, brightness/contrast jitter of the colours, and, optionally, dropping a scene's
point CLIP features altogether, greying out its colours, or painting a random texture over them.
The last two matter for synthetic scenes, whose objects have one colour each: a model trained on
them alone learns "one colour = one object" and cuts real, printed objects into pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sole_ros.datasets.scene_sample import SceneSample
from sole_ros.geometry import yaw_matrix
from sole_ros.model.config import SoleConfig
from sole_ros.model.voxel import VoxelScene, voxelize
from sole_ros.training.association_targets import (
    AssociationTargets,
    Captioner,
    PhraseEncoder,
    build_targets,
)
from sole_ros.training.config import REFERENCE_SCALE_RANGE


@dataclass
class TrainingItem:
    name: str
    scene: VoxelScene
    masks: torch.Tensor  # [K, V] bool
    targets: AssociationTargets
    instance_ids: np.ndarray


def elastic_distortion(
    points: np.ndarray, granularity: float, magnitude: float, rng: np.random.Generator
) -> np.ndarray:
    """Displace points by a smooth random field: Gaussian noise on a grid of cell ``granularity``
    (metres), blurred three times per axis with a 3-tap box filter, trilinearly interpolated,
    scaled by ``magnitude``."""
    from scipy.interpolate import RegularGridInterpolator
    from scipy.ndimage import uniform_filter1d

    lo = points.min(axis=0)
    dims = ((points - lo).max(axis=0) // granularity).astype(int) + 3
    noise = rng.standard_normal((*dims, 3)).astype(np.float32)
    for _ in range(2):
        for axis in range(3):
            noise = uniform_filter1d(noise, size=3, axis=axis, mode="constant")
    axes = [
        np.linspace(lo[d] - granularity, lo[d] + granularity * (dims[d] - 2), dims[d])
        for d in range(3)
    ]
    field = RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0.0)
    return points + field(points) * magnitude


def color_texture(
    points: np.ndarray, rng: np.random.Generator, waves: int = 8, strength: float = 0.3
) -> np.ndarray:
    """[N, 3] colour offsets varying over space like printed textures: a sum of ``waves`` random
    plane waves with wavelengths of 3 to 20 cm and random RGB amplitudes (std ``strength``)."""
    directions = rng.normal(size=(waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = directions * (2 * np.pi / rng.uniform(0.03, 0.2, waves))[:, None]
    amplitudes = rng.normal(0, strength / np.sqrt(waves / 2), (waves, 3))
    return np.sin(points @ frequencies.T + rng.uniform(0, 2 * np.pi, waves)) @ amplitudes


def augment(
    sample: SceneSample,
    rng: np.random.Generator,
    elastic: bool = True,
    feature_dropout: float = 0.0,
    color_drop: float = 0.0,
    texture: float = 0.0,
    scale_range: tuple[float, float] = REFERENCE_SCALE_RANGE,
) -> SceneSample:
    points = sample.points.astype(np.float64)
    if elastic and rng.random() < 0.95:
        for granularity, magnitude in ((0.2, 0.4), (0.8, 1.6)):
            points = elastic_distortion(points, granularity, magnitude, rng)
    points = (points - points.mean(axis=0)).astype(np.float32)
    points = points @ yaw_matrix(rng.uniform(0, 2 * np.pi)).astype(np.float32).T
    flips = np.where(rng.random(2) < 0.5, -1.0, 1.0)
    points[:, :2] *= flips
    points *= rng.uniform(*scale_range)
    colors = np.clip(
        (sample.colors - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.1, 0.1), 0, 1
    )
    if color_drop > 0 and rng.random() < color_drop:
        colors = np.full_like(colors, 0.5)
    elif texture > 0 and rng.random() < texture:
        colors = np.clip(colors + color_texture(points.astype(np.float64), rng), 0, 1)
    changes = {"points": points.astype(np.float32), "colors": colors}
    if feature_dropout > 0 and rng.random() < feature_dropout:
        changes.update(clip_features=None, clip_valid=None)
    return SceneSample(**{**sample.__dict__, **changes})


def voxel_instances(
    point_to_voxel: np.ndarray, instance: np.ndarray, num_voxels: int
) -> np.ndarray:
    """Majority instance id per voxel (-1 where most points have none)."""
    pairs = np.stack([point_to_voxel, instance], axis=1)
    uniq, counts = np.unique(pairs, axis=0, return_counts=True)
    # sort by voxel, then by count descending: the first row per voxel is its majority
    order = np.lexsort((-counts, uniq[:, 0]))
    uniq = uniq[order]
    first = np.ones(len(uniq), dtype=bool)
    first[1:] = uniq[1:, 0] != uniq[:-1, 0]
    out = np.full(num_voxels, -1, dtype=np.int64)
    out[uniq[first, 0]] = uniq[first, 1]
    return out


def prepare_item(
    sample: SceneSample,
    config: SoleConfig,
    encode: PhraseEncoder,
    rng: np.random.Generator | None,
    captioner: Captioner | None = None,
    min_voxels: int = 1,
    elastic: bool = True,
    feature_dropout: float = 0.0,
    encode_phrases: PhraseEncoder | None = None,
    color_drop: float = 0.0,
    texture: float = 0.0,
    scale_range: tuple[float, float] = REFERENCE_SCALE_RANGE,
) -> TrainingItem | None:
    """Augment (when ``rng`` is given), voxelise and build targets; None when no instance survives.
    ``encode`` writes captions, ``encode_phrases`` (default: ``encode``) the entity phrases."""
    if rng is not None:
        sample = augment(
            sample,
            rng,
            elastic=elastic,
            feature_dropout=feature_dropout,
            color_drop=color_drop,
            texture=texture,
            scale_range=scale_range,
        )
    clip = sample.clip_features
    if clip is not None and clip.shape[1] != config.clip_dim:
        raise ValueError(
            f"{sample.name}: point features are {clip.shape[1]}-d, the model expects {config.clip_dim}"
        )
    scene = voxelize(sample.points, sample.colors, clip, config)
    voxel_ids = voxel_instances(scene.point_to_voxel, sample.instance, scene.num_voxels)
    ids = sample.instance_ids
    masks = torch.from_numpy(voxel_ids[None, :] == ids[:, None])
    keep = masks.sum(dim=1) >= min_voxels
    ids, masks = ids[keep.numpy()], masks[keep]
    if len(ids) == 0:
        return None
    targets = build_targets(sample, ids, scene.clip, masks, encode, captioner, encode_phrases)
    return TrainingItem(sample.name, scene, masks, targets, ids)
