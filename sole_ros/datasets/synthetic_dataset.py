"""Synthetic scenes (sole_ros.synthetic) as training/evaluation samples with captions.

Each seed is one scene. Points come either from the surfaces (``source="surface"``, like the
reconstructed meshes of ScanNet) or from fusing a rendered Kinect-like RGB-D sweep
(``source="scan"``, like a robot's live scan, with holes and noise). Every object carries its
generated caption and entity phrases, so MCA and MEA targets can be built for it.

Point CLIP features: the paper fuses OpenSeg pixel features over views; OpenSeg (and any
pretrained 2D model) cannot run here, so ``TextOracleFeatures`` stands in for it at that boundary:
each point gets the CLIP text embedding of the category it belongs to ("mug", "floor"), encoded
the way queries are (the trainer passes an encoder with SOLE's prompt), with noise and random
unseen points. It is what a perfect 2D open-vocabulary segmenter fused over views would give;
swap in real fused features (PointFeatureFolder) where they exist.
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np

from sole_ros.datasets.scene_sample import SceneSample
from sole_ros.synthetic import (
    CLASS_NAMES,
    fuse_frames,
    generate_scene,
    render_sequence,
    sample_point_cloud,
)

TextEncoder = Callable[[Sequence[str]], np.ndarray]  # phrases -> [n, D] L2-normalised


class TextOracleFeatures:
    """Per-point features = text embedding of the point's object phrase (background: floor/wall),
    as ``encode_text`` writes it,
    plus Gaussian noise of ``noise`` (relative), re-normalised; ``unseen`` of the points get none."""

    def __init__(
        self, encode_text: TextEncoder, noise: float = 0.3, unseen: float = 0.05, seed: int = 0
    ):
        self.encode_text = encode_text
        self.noise = noise
        self.unseen = unseen
        self.seed = seed
        self._cache: dict[str, np.ndarray] = {}

    def _embed(self, phrases: list[str]) -> np.ndarray:
        missing = [p for p in dict.fromkeys(phrases) if p not in self._cache]
        if missing:
            for phrase, row in zip(
                missing, np.asarray(self.encode_text(missing), dtype=np.float32)
            ):
                self._cache[phrase] = row
        return np.stack([self._cache[p] for p in phrases])

    def __call__(self, sample: SceneSample, heads: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, zlib.crc32(sample.name.encode())])
        # One phrase per point group: object head phrases, floor (z ~ 0) or wall for the background.
        groups = np.where(
            sample.instance >= 0,
            sample.instance,
            np.where(np.abs(sample.points[:, 2]) < 0.02, -2, -3),
        )
        keys, inverse = np.unique(groups, return_inverse=True)
        phrases = [
            heads.get(int(k), "object") if k >= 0 else ("floor" if k == -2 else "wall")
            for k in keys
        ]
        table = self._embed(phrases)
        features = table[inverse.reshape(-1)]
        if self.noise > 0:
            features = features + rng.normal(
                0, self.noise / np.sqrt(features.shape[1]), features.shape
            )
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        valid = rng.random(len(features)) >= self.unseen
        return np.where(valid[:, None], features, 0.0).astype(np.float32), valid


class SyntheticScenes:
    """A fixed list of synthetic scenes by seed, loaded on demand as SceneSample."""

    def __init__(
        self,
        seeds: Sequence[int],
        kind: str = "tabletop",
        source: str = "surface",
        object_density: float = 6000.0,
        background_density: float = 800.0,
        num_frames: int = 12,
        image_size: tuple[int, int] = (160, 120),
        max_points: int | None = 40000,
        features: TextOracleFeatures | None = None,
        mixed_kinds: bool = False,
        clutter: float = 0.0,
        room_max_points: int | None = None,
        object_sizes: str = "compact",
    ):
        if source not in ("surface", "scan"):
            raise ValueError(f"source must be 'surface' or 'scan', got {source!r}")
        self.seeds = list(seeds)
        self.kind = kind
        self.source = source
        self.object_density = object_density
        self.background_density = background_density
        self.num_frames = num_frames
        self.image_size = image_size
        self.max_points = max_points
        self.room_max_points = room_max_points  # rooms' own cap; None: max_points
        self.features = features
        self.mixed_kinds = mixed_kinds  # alternate tabletop and room scenes by seed parity
        self.clutter = clutter  # stacked and touching objects (generate_scene)
        self.object_sizes = object_sizes  # the small objects' size ranges (catalogue.OBJECT_SIZES)
        self.class_names = dict(enumerate(CLASS_NAMES))

    def __len__(self) -> int:
        return len(self.seeds)

    def scene_kind(self, seed: int) -> str:
        return ("room" if seed % 2 else "tabletop") if self.mixed_kinds else self.kind

    def __getitem__(self, index: int) -> SceneSample:
        seed = self.seeds[index]
        scene = generate_scene(
            seed, self.scene_kind(seed), clutter=self.clutter, sizes=self.object_sizes
        )
        if self.source == "surface":
            cloud = sample_point_cloud(
                scene,
                seed=0,
                object_density=self.object_density,
                background_density=self.background_density,
            )
        else:
            w, h = self.image_size
            cloud = fuse_frames(render_sequence(scene, self.num_frames, w, h, seed=0))
        keep = np.arange(len(cloud))
        cap = self.max_points
        if self.room_max_points is not None and self.scene_kind(seed) == "room":
            cap = self.room_max_points
        if cap is not None and len(cloud) > cap:
            keep = np.sort(np.random.default_rng(seed).choice(len(cloud), cap, replace=False))
        sample = SceneSample(
            name=f"synthetic_{self.scene_kind(seed)}_{seed:06d}",
            points=cloud.points[keep],
            colors=cloud.colors[keep] / 255.0,
            semantic=cloud.class_ids[keep],
            instance=np.where(cloud.instance_ids[keep] > 0, cloud.instance_ids[keep], -1),
            normals=cloud.normals[keep],
            captions={o.instance_id: o.caption for o in scene.objects},
            entity_phrases={o.instance_id: o.entity_phrases for o in scene.objects},
            class_names=self.class_names,
        )
        if self.features is not None:
            heads = {o.instance_id: o.class_name for o in scene.objects}
            sample.clip_features, sample.clip_valid = self.features(sample, heads)
        return sample
