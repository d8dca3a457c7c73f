"""Open-vocabulary instance segmentation of one scene at a time, with a per-scene cache.

``set_scene`` voxelises the points and runs the text-independent part of SOLE (backbone, CLIP
fusion, decoder keys, queries) once per scene version. ``query`` then only encodes the phrases
(cached per phrase), runs the decoder with them as text keys, scores the masks and splits them into
connected parts, in the reference's order: p from the soft geometric mean of both branches, each
query's mask (logit > 0) split into parts connected within ``dbscan_eps``, top-k over
(part x phrase) by p, score = p x mean mask probability, no NMS, last decoder output only.
Only the queries whose parts can enter the top-k are split (the splitting is the slow part).

Two optional steps, off in SOLE's settings, for small splitting distances (tabletops): parts
smaller than ``min_part_fraction`` of their query's largest part are dropped (stray voxels would
otherwise become answers with their query's full score), and an answer whose voxels overlap a
better-scored answer for the same phrase with IoU >= ``duplicate_iou`` is dropped (several
queries on one object give one answer, not several).

Contrast phrases (none in SOLE's settings) are names of other things the robot may see. They join
every query as extra classes of the softmax (and extra text keys of the decoder) but are never
answered: asked alone, a phrase only competes with the background, so any object a little closer
to it than to the background scores high; with contrast phrases, "mug" must also beat "bowl".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from sole_ros.device import autocast, resolve_device
from sole_ros.inference.connected_parts import column_max, column_min, connected_parts
from sole_ros.inference.scoring import class_probabilities, mean_mask_probability
from sole_ros.model.voxel import VoxelScene, voxelize


@dataclass
class Instance:
    """One segmented object: indices into the points given to ``set_scene`` and its box."""

    point_indices: np.ndarray
    label: str
    score: float
    centroid: np.ndarray
    bbox_center: np.ndarray
    bbox_size: np.ndarray
    num_points: int
    query_index: int = -1  # which decoder query produced it (diagnostics)
    # its voxels in the segmenter's voxelisation; empty when merged over views (multi_view.py)
    voxel_indices: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False
    )
    # the decoder's semantic embedding (unit, CLIP text space) of the query that produced it, from
    # a class-agnostic segmentation: what the object memory ranks phrases against (None elsewhere)
    embed: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Candidate:
    """A part of a query's mask with one phrase, before it is turned into an Instance."""

    query: int
    phrase: int
    class_prob: float
    voxels: np.ndarray  # voxel indices of the part
    score: float


class _CachedScene:
    def __init__(self, version, scene: VoxelScene, encoding, points: np.ndarray):
        self.version = version
        self.scene = scene
        self.encoding = encoding
        self.points = points
        self.raw = scene.raw_coords.numpy().astype(np.float64)  # what masks are split on

    def points_of(self, voxels: np.ndarray) -> np.ndarray:
        """Indices (ascending) of the input points that fall into the given voxels."""
        selected = np.zeros(self.scene.num_voxels, dtype=bool)
        selected[voxels] = True
        return np.flatnonzero(selected[self.scene.point_to_voxel])


def split_mask(
    mask_logits: np.ndarray, raw_coords: np.ndarray, eps: float, min_part_fraction: float = 0.0
) -> list[np.ndarray]:
    """The voxels of one query's mask (logit > 0) in parts connected within eps (DBSCAN order),
    without the parts smaller than ``min_part_fraction`` of the largest."""
    return split_masks(mask_logits[None], [0], raw_coords, eps, min_part_fraction)[0]


def split_masks(
    masks_t: np.ndarray, queries, raw_coords: np.ndarray, eps: float, min_part_fraction: float = 0.0
) -> dict[int, list[np.ndarray]]:
    """split_mask for each query q in ``queries`` (rows of masks_t [Q, N]), in few connected_parts
    calls: each query's voxels form their own group, so the parts are the same as split one by one.
    A call takes queries until they hold SPLIT_POINTS voxels (room-sized masks stay bounded)."""
    queries = [int(q) for q in queries]
    voxels = [np.flatnonzero(masks_t[q] > 0) for q in queries]
    out: dict[int, list[np.ndarray]] = {q: [] for q in queries}
    start = 0
    while start < len(queries):
        end, held = start, 0
        while end < len(queries) and (end == start or held + voxels[end].shape[0] <= SPLIT_POINTS):
            held += voxels[end].shape[0]
            end += 1
        _split_groups(
            queries[start:end], voxels[start:end], raw_coords, eps, min_part_fraction, out
        )
        start = end
    return out


def _split_groups(
    queries: list[int],
    voxels: list[np.ndarray],
    raw_coords: np.ndarray,
    eps: float,
    min_part_fraction: float,
    out: dict[int, list[np.ndarray]],
) -> None:
    sizes = np.array([v.shape[0] for v in voxels], dtype=np.int64)
    if sizes.sum() == 0:
        return
    labels = connected_parts(
        raw_coords[np.concatenate(voxels)], eps, groups=np.repeat(np.arange(len(queries)), sizes)
    )
    start = 0
    for q, own, size in zip(queries, voxels, sizes):
        if size:
            part = labels[start : start + size]
            part = part - part.min()
            order = np.argsort(part, kind="stable")
            counts = np.bincount(part)
            bounds = np.r_[0, np.cumsum(counts)]
            smallest = min_part_fraction * counts.max()
            out[q] = [
                own[order[bounds[i] : bounds[i + 1]]]
                for i in range(bounds.shape[0] - 1)
                if counts[i] >= smallest
            ]
        start += size


# Queries split per connected_parts call while ranking: large enough to share the call's overhead,
# small enough that a query for a few answers does not split every mask.
SPLIT_BATCH = 32
# Voxels per connected_parts call: bounds its memory when masks are room-sized (random weights).
SPLIT_POINTS = 1_000_000


def drop_duplicates(candidates: list[Candidate], num_voxels: int, iou: float) -> list[Candidate]:
    """Candidates (best first) without those overlapping a kept one of the same phrase with IoU >= iou."""
    kept: list[Candidate] = []
    masks: dict[int, list[np.ndarray]] = {}
    for c in candidates:
        mask = np.zeros(num_voxels, dtype=bool)
        mask[c.voxels] = True
        same = masks.setdefault(c.phrase, [])
        if any(np.count_nonzero(mask & m) / np.count_nonzero(mask | m) >= iou for m in same):
            continue
        same.append(mask)
        kept.append(c)
    return kept


def ranked_candidates(
    masks: torch.Tensor,
    probs: torch.Tensor,
    raw_coords: np.ndarray,
    eps: float,
    top_k: int,
    min_score: float = 0.0,
    min_part_fraction: float = 0.0,
    duplicate_iou: float | None = None,
) -> list[Candidate]:
    """Top-k (part x phrase) candidates by class probability, then sorted by final score.

    masks [N, Q] logits, probs [Q, T]. Parts inherit their query's probabilities, so walking the
    (query, phrase) pairs by decreasing probability and splitting lazily yields the same top-k as
    splitting every query first; the walk stops once k parts are collected or once the
    probability (an upper bound of every later score) falls below min_score.
    """
    probs_cpu = probs.detach().float().cpu()
    flat = probs_cpu.flatten()
    order = torch.argsort(flat, descending=True, stable=True).numpy()
    n_phrases = probs_cpu.shape[1]
    masks_t = np.ascontiguousarray(masks.detach().float().cpu().numpy().T)  # [Q, N]
    # queries in the order the walk first reaches them, split a batch at a time (one call each)
    query_order = list(dict.fromkeys((order // n_phrases).tolist()))
    next_batch = 0
    parts_of: dict[int, list[np.ndarray]] = {}
    chosen: list[Candidate] = []
    for flat_index in order:
        if len(chosen) >= top_k:
            break
        p = float(flat[flat_index])
        if p < min_score:
            break
        q, t = divmod(int(flat_index), n_phrases)
        if q not in parts_of:
            batch = query_order[next_batch : next_batch + SPLIT_BATCH]
            next_batch += len(batch)
            parts_of.update(split_masks(masks_t, batch, raw_coords, eps, min_part_fraction))
        for voxels in parts_of[q]:
            if len(chosen) >= top_k:
                break
            score = p * mean_mask_probability(torch.from_numpy(masks_t[q][voxels]))
            chosen.append(Candidate(q, t, p, voxels, score))
    chosen.sort(key=lambda c: -c.score)
    chosen = [c for c in chosen if c.score >= min_score]
    if duplicate_iou is not None:
        chosen = drop_duplicates(chosen, raw_coords.shape[0], duplicate_iou)
    return chosen


class SegmenterOver:
    """A segmenter built over another, ``self.base``: the settings callers read come from it."""

    @property
    def model(self):
        return self.base.model

    @property
    def device(self):
        return self.base.device

    @property
    def top_k(self) -> int:
        return self.base.top_k

    @property
    def dbscan_eps(self) -> float:
        return self.base.dbscan_eps

    @property
    def contrast_phrases(self) -> list[str]:
        return self.base.contrast_phrases

    def encode_text(self, phrases: list[str]):
        return self.base.encode_text(phrases)


class OpenVocabSegmenter:
    """Query a scene with free-form phrases; see the module docstring.

    model: a SoleModel (weights loaded); text_encoder: a TextEncoder whose width equals
    ``model.config.clip_dim``; device: "auto", "cpu" or "cuda[:N]"; use_autocast: float16 on the GPU.
    """

    def __init__(
        self,
        model,
        text_encoder,
        device="auto",
        use_autocast: bool = False,
        dbscan_eps: float | None = None,
        top_k: int | None = None,
        contrast_phrases=(),
    ):
        # dbscan_eps / top_k: None = the model config's; so are min_part_fraction and duplicate_iou
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.text_encoder = text_encoder
        if text_encoder.dim != model.config.clip_dim:
            raise ValueError(
                f"text encoder width {text_encoder.dim} != model clip_dim {model.config.clip_dim}"
            )
        self.use_autocast = use_autocast
        self.dbscan_eps = float(dbscan_eps if dbscan_eps is not None else model.config.dbscan_eps)
        self.top_k = int(top_k if top_k is not None else model.config.top_k)
        self.min_part_fraction = float(model.config.min_part_fraction)
        self.duplicate_iou = model.config.duplicate_iou
        self.contrast_phrases = self._check_contrast(contrast_phrases)
        self._scene: _CachedScene | None = None
        self._lock = threading.RLock()  # the scene in use: held by queries and by the swap
        self._encode_lock = threading.Lock()

    # ---------------------------------------------------------------------------------- scene
    @property
    def scene_version(self):
        return None if self._scene is None else self._scene.version

    def set_scene(self, points, colors, clip_features=None, version: int = 0) -> bool:
        """Voxelise and encode the scene unless ``version`` is the one already cached.

        Returns True when the scene was (re-)encoded. Raises ValueError for empty/invalid input.
        """
        if self._scene is not None and self._scene.version == version:
            return False
        self.use_scene(self.prepare_scene(points, colors, clip_features, version))
        return True

    @torch.no_grad()
    def prepare_scene(self, points, colors, clip_features=None, version: int = 0) -> _CachedScene:
        """The encoded scene, not yet in use: queries keep answering on the current one while
        this runs (seconds); ``use_scene`` then swaps it in. Encodings run one at a time."""
        with self._encode_lock:
            scene = voxelize(points, colors, clip_features, self.model.config)
            with autocast(self.device, self.use_autocast):
                encoding = self.model.encode([scene])[0]
            return _CachedScene(version, scene, encoding, np.asarray(points, dtype=np.float64))

    def use_scene(self, prepared: _CachedScene) -> None:
        """Answer from ``prepared`` from now on (waits only for a query in progress)."""
        with self._lock:
            self._scene = prepared

    def clear_scene(self) -> None:
        with self._lock:
            self._scene = None

    # ---------------------------------------------------------------------------------- query
    def _require_scene(self) -> _CachedScene:
        if self._scene is None:
            raise ValueError("no scene: call set_scene first")
        return self._scene

    @staticmethod
    def _check_phrases(phrases) -> list[str]:
        if isinstance(phrases, str):
            phrases = [phrases]
        phrases = list(phrases)
        if not phrases:
            raise ValueError("at least one phrase is needed")
        for p in phrases:
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"phrases must be non-empty strings, got {p!r}")
        return phrases

    @classmethod
    def _check_contrast(cls, phrases) -> list[str]:
        """Contrast phrases may be none at all; any given must be non-empty strings."""
        return cls._check_phrases(phrases) if len(phrases) else []

    @torch.no_grad()
    def predict(self, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits [N_voxels, Q] and class probabilities p [Q, P] for the phrases."""
        masks, probs, _ = self._decode(phrases)
        return masks, probs

    @torch.no_grad()
    def _decode(self, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """predict's masks and probabilities, and the queries' semantic embeddings [Q, clip_dim]."""
        phrases = self._check_phrases(phrases)
        with self._lock:
            cached = self._require_scene()
            text = self.encode_text(phrases)
            with autocast(self.device, self.use_autocast):
                out = self.model.decode([cached.encoding], [text], return_aux=False)
            masks = out["pred_masks"][0].float()
            probs = class_probabilities(
                masks,
                out["pred_logits"][0],
                cached.encoding.clip,
                text,
                self.model.bg_feature,
                use_clip=cached.encoding.has_clip,
                scale=self.model.config.logit_scale,
            )
            return masks, probs, out["pred_embeds"][0].float()

    def encode_text(self, phrases: list[str]) -> torch.Tensor:
        """The phrases' unit CLIP text embeddings [P, clip_dim] on the segmenter's device (cached per phrase)."""
        return self.text_encoder.encode(phrases).to(self.device)

    def query(
        self,
        phrases: list[str],
        top_k: int | None = None,
        min_score: float = 0.0,
        contrast_phrases: list[str] | None = None,
    ) -> list[Instance]:
        """Instances for the phrases, best first. Each phrase acts as its own class; a single
        phrase is a binary classifier against the background embedding and the contrast phrases
        (``contrast_phrases``, None: the segmenter's)."""
        phrases = self._check_phrases(phrases)
        top_k = self.top_k if top_k is None else int(top_k)
        if top_k <= 0:
            raise ValueError("top_k must be positive")
        contrast_phrases = (
            self.contrast_phrases
            if contrast_phrases is None
            else self._check_contrast(contrast_phrases)
        )
        contrast = [c for c in contrast_phrases if c not in phrases]
        with self._lock:
            cached = self._require_scene()
            masks, probs = self.predict(phrases + contrast)
            probs = probs[
                :, : len(phrases)
            ]  # the contrast phrases took their share; they are not answers
            chosen = ranked_candidates(
                masks,
                probs,
                cached.raw,
                self.dbscan_eps,
                top_k,
                min_score,
                self.min_part_fraction,
                self.duplicate_iou,
            )
            return [self._instance(cached, c, phrases[c.phrase]) for c in chosen]

    def segment_all(
        self, phrases: list[str] | None = None, min_score: float = 0.0
    ) -> list[Instance]:
        """Every connected part of every query's mask, without top-k.

        With phrases, each part is labelled with its most probable phrase and scored as in
        ``query``; without, the segmentation is class-agnostic: label "" and score = mean mask
        probability (the decoder's text keys are then the generic phrase "object"). Parts under
        ``min_part_fraction`` and duplicates (``duplicate_iou``) are dropped as in ``query``.
        """
        agnostic = phrases is None
        phrases = ["object"] if agnostic else self._check_phrases(phrases)
        with self._lock:
            cached = self._require_scene()
            masks, probs, embeds = self._decode(phrases)
            embeds = embeds.cpu().numpy()
            masks_t = np.ascontiguousarray(masks.cpu().numpy().T)
            best_p, best_t = probs.cpu().max(dim=1)
            parts = []
            parts_of = split_masks(
                masks_t,
                range(masks_t.shape[0]),
                cached.raw,
                self.dbscan_eps,
                self.min_part_fraction,
            )
            for q in range(masks_t.shape[0]):
                for voxels in parts_of[q]:
                    mask_prob = mean_mask_probability(torch.from_numpy(masks_t[q][voxels]))
                    p = 1.0 if agnostic else float(best_p[q])
                    c = Candidate(q, int(best_t[q]), p, voxels, p * mask_prob)
                    if c.score >= min_score:
                        parts.append(c)
            parts.sort(key=lambda c: -c.score)
            if self.duplicate_iou is not None:
                parts = drop_duplicates(parts, cached.raw.shape[0], self.duplicate_iou)
            found = [
                self._instance(cached, c, "" if agnostic else phrases[c.phrase]) for c in parts
            ]
            for c, instance in zip(parts, found):
                instance.embed = embeds[c.query]
            return found

    @staticmethod
    def _instance(cached: _CachedScene, c: Candidate, label: str) -> Instance:
        return make_instance(
            cached.points, cached.points_of(c.voxels), label, c.score, c.query, c.voxels
        )


def make_instance(
    points: np.ndarray,
    indices: np.ndarray,
    label: str,
    score: float,
    query_index: int = -1,
    voxels: np.ndarray | None = None,
) -> Instance:
    """The Instance of ``points[indices]``: centroid and axis-aligned box in the points' frame."""
    pts = points[indices]
    lo, hi = column_min(pts), column_max(pts)
    centroid = np.array([pts[:, i].mean() for i in range(3)])
    return Instance(
        point_indices=indices,
        label=label,
        score=float(score),
        centroid=centroid,
        bbox_center=(lo + hi) / 2,
        bbox_size=hi - lo,
        num_points=int(indices.shape[0]),
        query_index=query_index,
        voxel_indices=np.zeros(0, dtype=np.int64) if voxels is None else voxels,
    )
