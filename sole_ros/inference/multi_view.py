"""Test-time augmentation: segment a scene seen in several views and keep what the views agree on.

A sparse-voxel model's masks move with how the scene falls on its voxel grid: on the real mOSD
scans, scaling the scene by 0.95 or 1.05 instead of 1.0 moves the demo weights' class-agnostic
AP50 by up to 0.28 (sole_ros/weights/README.md). ``MultiViewSegmenter`` runs the segmenter on
``views`` copies of the scene, each turned about the vertical axis (z, gravity up as in ROS map
frames), scaled and shifted by less than a voxel, and merges the answers: answers of one phrase
from different views overlapping at IoU >= ``merge_iou`` are one object, whose mask is the points
that at least ``vote`` of them hold and whose score is their summed score over the number of
views, one answer per view (an object found by every view keeps its score, one found by a single
view loses most of it). View 0 is the scene itself, only scaled.

``scene_scale`` scales every view (about the scene's centroid), for a model that works best with
the scene at another size than the sensor's. The demo weights do best on the real mOSD tabletop
scans at 0.65, a scale chosen on those scans (sole_ros/weights/README.md). Splitting distances
stay in the scene's own metres.

Same interface as OpenVocabSegmenter for what the pipeline, the evaluation and the command line
use (set_scene, clear_scene, scene_version, query, segment_all); answers index the points given
to set_scene, with boxes in their frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from sole_ros.geometry import yaw_matrix
from sole_ros.inference.segmenter import Instance, OpenVocabSegmenter, SegmenterOver, make_instance


def view_transforms(views: int, scale: float, scale_jitter: float, shift: float, seed: int = 0):
    """[(rotation 3x3, scale, shift 3)] per view; view 0 unturned and unshifted at ``scale``."""
    rng = np.random.default_rng(seed)
    out = [(np.eye(3), float(scale), np.zeros(3))]
    for _ in range(views - 1):
        rotation = yaw_matrix(rng.uniform(0.0, 2.0 * np.pi))
        factor = scale * rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter)
        out.append((rotation, float(factor), rng.uniform(0.0, shift, 3)))
    return out


def merge_views(
    answers: list[list[Instance]],
    points: np.ndarray,
    num_views: int,
    merge_iou: float = 0.5,
    vote: float = 0.5,
) -> list[Instance]:
    """One answer per object found across views (see the module docstring), best first.

    ``answers``: per view, instances indexing ``points``. Greedy by score: the best answer left
    gathers every remaining answer of its label at IoU >= merge_iou with it; of those, each view's
    best votes on the points and adds its score (a view's weaker duplicates are absorbed).
    """
    flat = [(view, a) for view, found in enumerate(answers) for a in found]
    if not flat:
        return []
    flat.sort(key=lambda va: -va[1].score)
    views = np.array([view for view, _ in flat])
    rows = np.repeat(np.arange(len(flat)), [a.point_indices.shape[0] for _, a in flat])
    cols = np.concatenate([a.point_indices for _, a in flat])
    masks = sp.csr_matrix(
        (np.ones(rows.shape[0], dtype=np.float32), (rows, cols)), shape=(len(flat), points.shape[0])
    )
    sizes = np.asarray(masks.sum(axis=1)).ravel()
    inter = (masks @ masks.T).toarray()
    iou = inter / np.maximum(sizes[:, None] + sizes[None, :] - inter, 1.0)
    labels = np.array([a.label for _, a in flat], dtype=object)
    free = np.ones(len(flat), dtype=bool)
    merged = []
    for j in range(len(flat)):
        if not free[j]:
            continue
        members = np.flatnonzero(free & (labels == labels[j]) & (iou[j] >= merge_iou))
        free[members] = False
        _, first = np.unique(
            views[members], return_index=True
        )  # members are sorted: each view's best
        voters = members[first]
        held = np.asarray(masks[voters].sum(axis=0)).ravel()
        indices = np.flatnonzero(held >= vote * voters.shape[0])
        if indices.shape[0] == 0:
            continue
        best = flat[j][1]
        score = float(sum(flat[m][1].score for m in voters)) / num_views
        merged.append(make_instance(points, indices, best.label, score, best.query_index))
        merged[-1].embed = best.embed
    merged.sort(key=lambda a: -a.score)
    return merged


@dataclass
class _PreparedViews:
    views: list  # each view's prepared scene
    points: np.ndarray  # the scene's points as given
    version: object


class MultiViewSegmenter(SegmenterOver):
    """OpenVocabSegmenter over several views of each scene; see the module docstring.

    ``base`` is used for view 0; the other views get their own segmenter on the same model and
    text encoder (each caches its view's encoding).
    """

    def __init__(
        self,
        base: OpenVocabSegmenter,
        views: int = 8,
        scene_scale: float = 1.0,
        scale_jitter: float = 0.1,
        merge_iou: float = 0.5,
        vote: float = 0.5,
        seed: int = 0,
    ):
        if views < 1:
            raise ValueError(f"views must be at least 1, not {views}")
        if scene_scale <= 0:
            raise ValueError(f"scene_scale must be positive, not {scene_scale}")
        if not 0.0 <= scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be within [0, 1), not {scale_jitter}")
        if not 0.0 < merge_iou <= 1.0 or not 0.0 < vote <= 1.0:
            raise ValueError("merge_iou and vote must be within (0, 1]")
        self.base = base
        self.views = [base] + [
            OpenVocabSegmenter(
                base.model,
                base.text_encoder,
                device=base.device,
                use_autocast=base.use_autocast,
                dbscan_eps=base.dbscan_eps,
                top_k=base.top_k,
                contrast_phrases=base.contrast_phrases,
            )
            for _ in range(views - 1)
        ]
        self.transforms = view_transforms(
            views, scene_scale, scale_jitter, base.model.config.voxel_size, seed
        )
        self.scene_scale = float(scene_scale)
        self.split_distance = float(base.dbscan_eps)
        self.merge_iou, self.vote = float(merge_iou), float(vote)
        self._points: np.ndarray | None = None
        self._version = None
        self._encodings = 0
        self._lock = threading.RLock()

    @property
    def dbscan_eps(self) -> float:
        return self.split_distance  # the views' own are scaled with their view

    @property
    def scene_version(self):
        return self._version

    def set_scene(self, points, colors, clip_features=None, version: int = 0) -> bool:
        """Encode every view unless ``version`` is the one cached; True when (re-)encoded."""
        if self._points is not None and self._version == version:
            return False
        self.use_scene(self.prepare_scene(points, colors, clip_features, version))
        return True

    def prepare_scene(self, points, colors, clip_features=None, version: int = 0) -> _PreparedViews:
        """Every view encoded, not yet in use (see OpenVocabSegmenter.prepare_scene)."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] != 3:
            raise ValueError(f"points must be a non-empty [N, 3] array, got shape {points.shape}")
        with self._lock:
            self._encodings += 1
            encoding = self._encodings
        centre = points.mean(axis=0)
        # a fresh version per encoding, so that no view keeps an older encoding of this one
        views = [
            segmenter.prepare_scene(
                ((points - centre) @ rotation.T * scale + centre + shift).astype(np.float32),
                colors,
                clip_features,
                version=(encoding, version),
            )
            for segmenter, (rotation, scale, shift) in zip(self.views, self.transforms)
        ]
        return _PreparedViews(views, points, version)

    def use_scene(self, prepared: _PreparedViews) -> None:
        """Answer from every view of ``prepared`` from now on, all at once."""
        with self._lock:
            for segmenter, view, (_, scale, _) in zip(self.views, prepared.views, self.transforms):
                segmenter.dbscan_eps = self.split_distance * scale  # the same metres in the scene
                segmenter.use_scene(view)
            self._points, self._version = prepared.points, prepared.version

    def clear_scene(self) -> None:
        with self._lock:
            for segmenter in self.views:
                segmenter.clear_scene()
            self._points, self._version = None, None

    def _require_points(self) -> np.ndarray:
        if self._points is None:
            raise ValueError("no scene: call set_scene first")
        return self._points

    def query(
        self,
        phrases,
        top_k: int | None = None,
        min_score: float = 0.0,
        contrast_phrases: list[str] | None = None,
    ) -> list[Instance]:
        """As OpenVocabSegmenter.query, merged over the views."""
        top_k = self.top_k if top_k is None else int(top_k)
        with self._lock:
            points = self._require_points()
            # min_score applies to the merged score: a view's weaker answers still add to it
            answers = [
                s.query(phrases, top_k=top_k, contrast_phrases=contrast_phrases) for s in self.views
            ]
            merged = merge_views(answers, points, len(self.views), self.merge_iou, self.vote)
            return [a for a in merged if a.score >= min_score][:top_k]

    def segment_all(self, phrases=None, min_score: float = 0.0) -> list[Instance]:
        """As OpenVocabSegmenter.segment_all, merged over the views."""
        with self._lock:
            points = self._require_points()
            answers = [s.segment_all(phrases) for s in self.views]
            merged = merge_views(answers, points, len(self.views), self.merge_iou, self.vote)
            return [a for a in merged if a.score >= min_score]
