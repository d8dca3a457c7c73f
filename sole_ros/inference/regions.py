"""Region-wise segmentation: the map cut into overlapping crops, each segmented on its own, only
the crops whose voxels changed encoded again, instances that cross a crop border merged.

A crop is a square column of the world, ``size`` metres on a side (all heights), on a fixed grid
with a stride of ``size - overlap``: crop (i, j) covers x in [i s, i s + size), y likewise, s the
stride. The grid is the world's, not the map's, so a crop keeps its content as the map grows
elsewhere and its encoding can be reused. Its fingerprint (the voxels' coordinates and how often
each was observed) says whether anything in it changed since it was encoded: a camera that looks
at one room re-encodes that room's crops only, so an update costs what changed, not the map.

Each crop is segmented as a scene of its own. An object near a border is then found, whole or in
part, by every crop that holds some of it; two instances of different crops are one object when
they agree on the voxels both crops hold (intersection over union there at least
``MERGE_AGREEMENT``), and they come back as one instance: the union of their points, with the
label and score of the crop that saw the most of it. A crop sees slivers of what its edge cuts
and may take them for anything; an instance is kept only when the centre of a crop's part of it
lies in that crop's core (its square less half the overlap on each side: the cores tile the
plane), so each place is answered for by the crop that sees it with context all around.

With ``whole_when_it_fits`` a scene no wider than one crop is one crop, the whole scene, as SOLE
segments it; a larger one is cut.

Works over any segmenter with the prepare_scene / use_scene / query / segment_all interface
(OpenVocabSegmenter, MultiViewSegmenter); it offers the same interface, with point indices into
the whole scene given to ``prepare_scene``.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from sole_ros.inference.segmenter import Instance, SegmenterOver, make_instance

# Two instances of overlapping crops are one object when, on the voxels both crops hold, their
# intersection over union is at least this.
MERGE_AGREEMENT = 0.5
# A crop with fewer voxels than this is not segmented (a few stray voxels at a crop's edge).
MIN_CROP_VOXELS = 50
# The cell of a scene segmented whole (no grid cell has it).
WHOLE_SCENE = (2**62, 2**62)


@dataclass
class Crop:
    """One crop of one scene: its grid cell, its points (indices into the scene, ascending) and
    the encoding its content had when prepared (None once released for the bound on encodings:
    encoded again when needed). ``encoded_at`` orders encodings by age."""

    cell: tuple[int, int]
    indices: np.ndarray
    fingerprint: bytes
    prepared: object
    encoded_at: int = 0


@dataclass
class PreparedRegions:
    version: int
    points: np.ndarray
    crops: list[Crop]
    encoded: int  # crops encoded for this scene (the others were reused)
    size: float = math.inf
    overlap: float = 0.0
    colors: np.ndarray | None = None  # the scene's, to encode a released crop again
    clip_features: np.ndarray | None = None
    fresh_after: int = 0  # crops encoded after this (encoded_at) were encoded for this scene

    def core_cell(self, xy: np.ndarray) -> tuple[int, int]:
        """The cell whose core holds ``xy`` (the one cell of a scene segmented whole)."""
        if len(self.crops) == 1 and self.crops[0].cell == WHOLE_SCENE:
            return WHOLE_SCENE
        stride = self.size - self.overlap
        cell = np.floor((np.asarray(xy, dtype=np.float64) - self.overlap / 2) / stride).astype(
            np.int64
        )
        return int(cell[0]), int(cell[1])

    def in_core(self, cell: tuple[int, int], xy: np.ndarray) -> bool:
        """Whether ``xy`` lies in the cell's core: its square less half the overlap on the sides
        it shares (the cores tile the plane, each place in exactly one)."""
        if cell == WHOLE_SCENE:
            return True
        stride = self.size - self.overlap
        low = np.asarray(cell, dtype=np.float64) * stride + self.overlap / 2
        return bool(np.all((xy >= low) & (xy < low + stride)))


def crop_cells(
    points: np.ndarray, size: float, overlap: float
) -> dict[tuple[int, int], np.ndarray]:
    """Every non-empty crop cell and the indices (ascending) of the points it holds."""
    stride = size - overlap
    cells: dict[tuple[int, int], list[np.ndarray]] = {}
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    last = np.floor(xy / stride).astype(np.int64)  # the last cell along each axis holding a point
    # a point lies in cell i when i s <= x < i s + size: cell `last`, and `last - 1` when within
    # the overlap (size < 2 s, so never two cells back)
    also_previous = xy - (last - 1) * stride < size
    index = np.arange(xy.shape[0])
    for dx in (0, 1):
        for dy in (0, 1):
            keep = np.ones(xy.shape[0], dtype=bool)
            if dx:
                keep &= also_previous[:, 0]
            if dy:
                keep &= also_previous[:, 1]
            if not keep.any():
                continue
            ix, iy = last[keep, 0] - dx, last[keep, 1] - dy
            members = index[keep]
            order = np.lexsort((members, iy, ix))
            ix, iy, members = ix[order], iy[order], members[order]
            starts = np.flatnonzero(np.r_[True, (np.diff(ix) != 0) | (np.diff(iy) != 0)])
            for start, end in zip(starts, np.r_[starts[1:], members.shape[0]]):
                cells.setdefault((int(ix[start]), int(iy[start])), []).append(members[start:end])
    return {cell: np.sort(np.concatenate(parts)) for cell, parts in cells.items()}


def _fingerprint(coords: np.ndarray, colors: np.ndarray, observations: np.ndarray | None) -> bytes:
    digest = hashlib.blake2b(
        np.ascontiguousarray(coords, dtype=np.float32).tobytes(), digest_size=16
    )
    digest.update(np.ascontiguousarray(colors, dtype=np.float32).tobytes())
    if observations is not None:
        digest.update(np.ascontiguousarray(observations).tobytes())
    return digest.digest()


class RegionSegmenter(SegmenterOver):
    """Segments a scene crop by crop with ``base``; see the module docstring."""

    def __init__(
        self,
        base,
        size: float = 4.0,
        overlap: float = 0.5,
        min_crop_voxels: int = MIN_CROP_VOXELS,
        whole_when_it_fits: bool = False,
        max_encodings: int = 0,
    ):
        if not (math.isfinite(size) and size > 0):
            raise ValueError(f"region size must be a positive number of metres, got {size}")
        if not (math.isfinite(overlap) and 0 <= overlap < size / 2):
            raise ValueError(
                f"region overlap must be in [0, size/2), got {overlap} for size {size}"
            )
        self.base = base
        self.size = float(size)
        self.overlap = float(overlap)
        self.min_crop_voxels = int(min_crop_voxels)
        # a scene no wider than one crop is segmented whole (as SOLE segments a room), wherever
        # the grid would cut it
        self.whole_when_it_fits = bool(whole_when_it_fits)
        if max_encodings < 0:
            raise ValueError(f"max_encodings must be 0 (no bound) or more, got {max_encodings}")
        # crops' encodings kept at most (0: all): beyond it the oldest are released, so memory stays
        # bounded on a growing map; the newest are where the map changes, around the robot
        self.max_encodings = int(max_encodings)
        self._clock = 0  # counts encodings, to order them by age
        self._scene: PreparedRegions | None = None
        self._encoded: dict[tuple[int, int], Crop] = {}  # the last encoding of each cell, for reuse
        self._parts: dict[tuple[int, int], tuple] = {}  # cell -> (encoding, request, its parts)
        self._epoch = 0  # moves on when the encodings are forgotten
        self._lock = threading.RLock()  # the scene in use, and the base segmenter's current crop
        self._encode_lock = threading.Lock()

    @property
    def scene_version(self):
        return None if self._scene is None else self._scene.version

    # ---------------------------------------------------------------------------------- scene
    def set_scene(
        self, points, colors, clip_features=None, version: int = 0, observations=None
    ) -> bool:
        if self._scene is not None and self._scene.version == version:
            return False
        self.use_scene(self.prepare_scene(points, colors, clip_features, version, observations))
        return True

    def prepare_scene(
        self, points, colors, clip_features=None, version: int = 0, observations=None
    ) -> PreparedRegions:
        """Crop the scene and encode the crops whose content changed since they were last
        encoded; the others keep their encoding. ``observations`` (per point, optional) makes a
        crop whose voxels were seen again count as changed even where their centres did not move."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
            raise ValueError(f"points must be a non-empty (N,3) array, got shape {points.shape}")
        colors = np.asarray(colors)
        observations = None if observations is None else np.asarray(observations)
        clip_features = None if clip_features is None else np.asarray(clip_features)
        with self._encode_lock:
            epoch = self._epoch
            fresh_after = self._clock
            crops, encoded = [], 0
            for cell, indices in self._cells(points):
                if indices.shape[0] < self.min_crop_voxels:
                    continue
                fingerprint = _fingerprint(
                    points[indices],
                    colors[indices],
                    None if observations is None else observations[indices],
                )
                previous = self._encoded.get(cell)
                if previous is not None and previous.fingerprint == fingerprint:
                    crops.append(
                        Crop(cell, indices, fingerprint, previous.prepared, previous.encoded_at)
                    )
                    continue
                crop = Crop(cell, indices, fingerprint, None)
                self._encode(crop, points, colors, clip_features, version)
                crops.append(crop)
                encoded += 1
            if not crops:
                raise ValueError(
                    f"no crop holds {self.min_crop_voxels} voxels or more: the scene is too sparse"
                )
            if epoch == self._epoch:  # not forgotten meanwhile (a reset or a loaded map)
                self._encoded = {crop.cell: crop for crop in crops}
            return PreparedRegions(
                version,
                points,
                crops,
                encoded,
                self.size,
                self.overlap,
                colors,
                clip_features,
                fresh_after,
            )

    def _encode(self, crop: Crop, points, colors, clip_features, version) -> None:
        indices = crop.indices
        features = None if clip_features is None else clip_features[indices]
        crop.prepared = self.base.prepare_scene(
            points[indices], colors[indices], features, version=(version, crop.cell)
        )
        self._clock += 1
        crop.encoded_at = self._clock

    def _encoded_crop(self, scene: PreparedRegions, crop: Crop):
        """The crop's encoding, encoded again when it was released."""
        if crop.prepared is None:
            with self._encode_lock:
                if crop.prepared is None:
                    self._encode(
                        crop, scene.points, scene.colors, scene.clip_features, scene.version
                    )
        return crop.prepared

    def _release_oldest(self, scene: PreparedRegions, keep_fresh: bool = False) -> None:
        """Release the oldest encodings beyond ``max_encodings`` (the crops keep their parts);
        with ``keep_fresh``, not those encoded for this scene (its segmentation still needs them)."""
        held = [crop for crop in scene.crops if crop.prepared is not None]
        if self.max_encodings <= 0 or len(held) <= self.max_encodings:
            return
        held.sort(key=lambda crop: crop.encoded_at)
        for crop in held[: len(held) - self.max_encodings]:
            if not (keep_fresh and crop.encoded_at > scene.fresh_after):
                crop.prepared = None

    def encodings_held(self) -> int:
        """Crops of the scene in use whose encodings are held."""
        scene = self._scene
        return 0 if scene is None else sum(crop.prepared is not None for crop in scene.crops)

    def _cells(self, points: np.ndarray) -> list[tuple[tuple[int, int], np.ndarray]]:
        extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
        if self.whole_when_it_fits and np.all(extent <= self.size):
            return [(WHOLE_SCENE, np.arange(points.shape[0]))]
        return sorted(crop_cells(points, self.size, self.overlap).items())

    def crop_count(self) -> int:
        """Crops of the scene in use (0 without one)."""
        scene = self._scene
        return 0 if scene is None else len(scene.crops)

    def use_scene(self, prepared: PreparedRegions) -> None:
        with self._lock:
            self._scene = prepared
            self._release_oldest(prepared, keep_fresh=True)

    def forget_encodings(self) -> None:
        """Encode every crop afresh next time: the map was reset or replaced, and a crop whose
        voxels, colours and counts happen to match its old ones may still differ in features."""
        with self._lock:
            self._epoch += 1
            self._encoded, self._parts = {}, {}

    def clear_scene(self) -> None:
        with self._lock:
            self._scene = None
            self.base.clear_scene()

    def _require_scene(self) -> PreparedRegions:
        if self._scene is None:
            raise ValueError("no scene: call set_scene first")
        return self._scene

    # ---------------------------------------------------------------------------------- query
    def query(
        self,
        phrases,
        top_k: int | None = None,
        min_score: float = 0.0,
        contrast_phrases=None,
        cells=None,
    ) -> list[Instance]:
        """Every crop's answers (only the crops of ``cells``, when given), merged across borders,
        best first; at most ``top_k``."""
        top_k = self.top_k if top_k is None else int(top_k)
        found = self._per_crop(
            lambda: self.base.query(
                phrases, top_k=top_k, min_score=min_score, contrast_phrases=contrast_phrases
            ),
            cells,
        )
        return merge_across_crops(found, self._require_scene())[:top_k]

    def segment_all(self, phrases=None, min_score: float = 0.0) -> list[Instance]:
        """Every crop's parts, merged across borders, best first. A crop whose encoding did not
        change gives the parts it gave before without running the decoder again."""
        key = (None if phrases is None else tuple(phrases), float(min_score))
        with self._lock:
            scene = self._require_scene()
            found = []
            for crop in scene.crops:
                kept = self._parts.get(crop.cell)
                if kept is None or kept[0] != crop.fingerprint or kept[1] != key:
                    self.base.use_scene(self._encoded_crop(scene, crop))
                    kept = (
                        crop.fingerprint,
                        key,
                        self.base.segment_all(phrases, min_score=min_score),
                    )
                    self._parts[crop.cell] = kept
                found.append((crop, kept[2]))
            current = {crop.cell for crop in scene.crops}
            self._parts = {cell: kept for cell, kept in self._parts.items() if cell in current}
            self._release_oldest(scene)
        return merge_across_crops(found, scene)

    def cells_holding(self, objects, max_crops: int) -> list[tuple[int, int]]:
        """The cells whose cores hold the centres of the first ``objects`` (Instances over the scene
        in use, in the order given), at most ``max_crops`` of them, in the order first reached; only
        crops whose encodings are held (no query waits for a far crop to be encoded again)."""
        with self._lock:
            scene = self._require_scene()
            present = {crop.cell for crop in scene.crops if crop.prepared is not None}
            cells: list[tuple[int, int]] = []
            for instance in objects:
                if len(cells) >= max_crops:
                    break
                cell = scene.core_cell(instance.centroid[:2])
                if cell in present and cell not in cells:
                    cells.append(cell)
            return cells

    def core_cell(self, xy) -> tuple[int, int]:
        """The cell whose core holds ``xy`` in the scene in use."""
        return self._require_scene().core_cell(xy)

    def _per_crop(self, ask, cells=None) -> list[tuple[Crop, list[Instance]]]:
        with self._lock:
            scene = self._require_scene()
            asked = [i for i, crop in enumerate(scene.crops) if cells is None or crop.cell in cells]
            answers = {}
            # the crops whose encodings are held first, so a released one never displaces one still to ask
            for i in sorted(asked, key=lambda i: scene.crops[i].prepared is None):
                crop = scene.crops[i]
                self.base.use_scene(self._encoded_crop(scene, crop))
                answers[i] = (crop, ask())
                self._release_oldest(scene)  # a crop already asked may go
            return [answers[i] for i in asked]


def merge_across_crops(
    found: list[tuple[Crop, list[Instance]]], scene: PreparedRegions
) -> list[Instance]:
    """The crops' instances with point indices into the whole scene; those of different crops
    that agree on the voxels both crops hold become one (see MERGE_AGREEMENT). Best first."""
    instances, crop_of, members = [], [], []
    for c, (crop, answers) in enumerate(found):
        for inst in answers:
            instances.append(inst)
            crop_of.append(c)
            members.append(crop.indices[inst.point_indices])
    if not instances:
        return []
    n, m = len(instances), scene.points.shape[0]
    rows = np.repeat(np.arange(n), [len(p) for p in members])
    held = sparse.csr_matrix(
        (np.ones(rows.shape[0], dtype=np.float32), (rows, np.concatenate(members))), shape=(n, m)
    )
    crop_rows = np.repeat(np.arange(len(found)), [crop.indices.shape[0] for crop, _ in found])
    crop_points = sparse.csr_matrix(
        (
            np.ones(crop_rows.shape[0], dtype=np.float32),
            (crop_rows, np.concatenate([crop.indices for crop, _ in found])),
        ),
        shape=(len(found), m),
    )
    shared = (held @ held.T).tocoo()  # points two instances have in common
    inside = (held @ crop_points.T).toarray()  # points of each instance inside each crop
    crop_of = np.asarray(crop_of)
    a, b, common = shared.row, shared.col, shared.data
    # pairs of different crops; within one crop the segmenter has already dropped duplicates
    pairs = (a < b) & (crop_of[a] != crop_of[b])
    a, b, common = a[pairs], b[pairs], common[pairs]
    # intersection over union of the two where both crops see (an instance lies in its own crop,
    # so its part in the other crop is its part in the shared band): a mug on a table is a small
    # part of the table's share of the band, and stays apart from it
    union = inside[a, crop_of[b]] + inside[b, crop_of[a]] - common
    agree = (union > 0) & (common >= MERGE_AGREEMENT * union)
    links = sparse.coo_matrix((np.ones(int(agree.sum())), (a[agree], b[agree])), shape=(n, n))
    labels = connected_components(links, directed=False)[1]  # numbered by their smallest member
    order = np.argsort(labels, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    merged = []
    for group in groups:
        # a part seen only near a crop's edge, where a neighbour sees the place whole, is a sliver
        # of something cut by the crop: the crop whose core holds it answers for it
        if not any(
            scene.in_core(found[crop_of[i]][0].cell, instances[i].centroid[:2]) for i in group
        ):
            continue
        # the crop that saw the most of it judges it: a crop holding a table's corner may take
        # the corner for anything, with confidence
        best = max(group, key=lambda i: (members[i].shape[0], instances[i].score))
        if len(group) == 1:
            indices = members[best]
        else:
            indices = np.unique(np.concatenate([members[i] for i in group]))
        source = instances[best]
        merged.append(
            make_instance(
                scene.points,
                indices,
                source.label,
                source.score,
                source.query_index if len(group) == 1 else -1,
            )
        )
        merged[-1].embed = source.embed
    merged.sort(key=lambda inst: -inst.score)
    return merged
