"""The perception pipeline without ROS: sensor data in, segmented scene, language queries out.

It joins the scene map (sole_ros.scene), the dense CLIP features of colour keyframes and the
open-vocabulary segmenter (sole_ros.inference). The ROS node, the bag replay and the demo all
drive this one object, so what they do is the same.

Threading: ingest may run on several threads while one thread segments and others query. The map
has its own lock. A segmentation encodes the map on the side (seconds) while queries go on
answering from the last finished one; only swapping the new one in waits for a query in
progress (``_answer_lock``), so a query never sees half of each.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from sole_ros.inference.object_ranking import RememberedParts, estimate_scores
from sole_ros.inference.regions import RegionSegmenter
from sole_ros.memory import (
    ObjectMemory,
    detections_from_instances,
    keys_from_centres,
    observe_depth_frame,
)
from sole_ros.scene import DenseClipFeatures, KeyframeSelector, SceneSnapshot, VoxelMap
from sole_ros.scene.validation import depth_in_metres
from sole_ros.settings_table import BY_NAME

# Voxel sizes in front of a depth reading that count as seen empty: half a voxel's diagonal (0.87),
# depth noise and pose error.
DEFAULT_FREE_SPACE_TOLERANCE = 2.5
# A depth frame clears what it sees through (an O(map) projection) once the camera moved this far or
# turned this much since the last frame that did, or this many seconds later: a 30 Hz camera's
# frames mostly repeat each other, and retiring an object takes three frames that see through it.
CLEAR_TRANSLATION = 0.05
CLEAR_ROTATION_DEG = 5.0
CLEAR_PERIOD = 0.5


class QueryRejected(ValueError):
    """A query that cannot be answered; the message is the reason given to the caller."""


@dataclass
class QueryLimits:
    max_phrases: int = 16
    max_phrase_length: int = 256

    def check(self, phrases) -> list[str]:
        phrases = [p.strip() for p in phrases]
        if not phrases or not any(phrases):
            raise QueryRejected("empty query: give at least one non-empty phrase")
        if any(not p for p in phrases):
            raise QueryRejected("empty phrase in the query: every phrase must have text")
        if len(phrases) > self.max_phrases:
            raise QueryRejected(f"too many phrases: {len(phrases)} > {self.max_phrases}")
        longest = max(len(p) for p in phrases)
        if longest > self.max_phrase_length:
            raise QueryRejected(f"phrase too long: {longest} > {self.max_phrase_length} characters")
        return phrases


@dataclass
class Segmentation:
    """The scene the segmenter currently holds: what queries are answered against."""

    snapshot: SceneSnapshot
    seconds: float
    finished_at: float = field(default_factory=time.time)
    # (object id, Instance) for every part of the class-agnostic segmentation, when the pipeline
    # keeps an object memory: the memory's stable ids (see sole_ros/memory)
    objects: list = field(default_factory=list)
    # the same parts with what ranks them for a phrase without the whole map's decoder pass
    remembered: RememberedParts | None = None

    @property
    def version(self) -> int:
        return self.snapshot.version


@dataclass
class QueryAnswer:
    instances: list
    segmentation: Segmentation
    object_ids: list = field(
        default_factory=list
    )  # per instance: its stable object id, 0 when none

    @property
    def stamp(self) -> float:
        return self.segmentation.snapshot.stamp


@dataclass
class PipelineSettings:
    """Everything build_pipeline needs; the node fills it from its parameters."""

    device: str = "auto"
    checkpoint: str = ""
    model_config: str = "paper"  # architecture when no checkpoint carries one
    allow_random_weights: bool = False
    clip_model: str = BY_NAME["model.clip_model"].default
    clip_pretrained: str | None = BY_NAME["model.clip_pretrained"].default
    prompt: str = BY_NAME["model.prompt"].default
    autocast: bool = False
    top_k: int = (
        0  # candidates ranked per query; 0: the checkpoint's topk_per_image, else DEFAULT_TOP_K
    )
    min_points: int = 0  # answers (and full-segmentation parts) with fewer points are dropped
    split_distance: float | None = None  # DBSCAN eps of the mask splitting; None: the checkpoint's
    contrast_phrases: tuple[str, ...] = ()  # other things' names a query must beat (never answered)
    test_time_views: int = (
        1  # > 1: answers merged over turned and scaled views (inference/multi_view.py)
    )
    scene_scale: float = (
        1.0  # the scene scaled by this before the model (a size the model works best at)
    )
    view_scale_jitter: float = 0.1  # the extra views' scales vary by up to this fraction
    num_queries: int = 0  # FPS query seeds per pass; 0: the count the checkpoint was trained with
    input_mode: str = (
        "auto"  # auto (the checkpoint's: published -> reference), reference or averaged
    )
    voxel_size: float = 0.02
    max_voxels: int = 500_000
    keep_radius: float | None = None
    max_range: float | None = None
    dense_features: bool = True
    keyframe_translation: float = 0.05
    keyframe_rotation_deg: float = 5.0
    keyframe_period: float | None = 1.0
    max_phrases: int = 16
    max_phrase_length: int = 256
    object_memory: bool = False  # stable object ids across segmentations (sole_ros/memory)
    max_objects: int = 500
    free_space_tolerance: float = DEFAULT_FREE_SPACE_TOLERANCE
    segmentation_mode: str = "auto"  # whole | regions | auto (sole_ros/inference/regions.py)
    region_size: float = 4.0
    region_overlap: float = 0.5
    decoded_crops: int = 4  # queries from the memory decode at most this many crops; 0: every crop
    max_encoded_crops: int = 16  # crops' encodings kept for reuse (regions); 0: all

    @classmethod
    def from_parameters(cls, values: dict) -> "PipelineSettings":
        """From sole_node's parameter values (names as in sole_ros/ros/parameters.py)."""

        def positive_or_none(x):
            return float(x) if x and x > 0 else None

        return cls(
            device=values["device"],
            checkpoint=values["model.checkpoint"],
            model_config=values["model.config"],
            allow_random_weights=values["model.allow_random_weights"],
            clip_model=values["model.clip_model"],
            clip_pretrained=values["model.clip_pretrained"] or None,
            prompt=values["model.prompt"],
            autocast=values["model.autocast"],
            top_k=values["query.top_k"],
            min_points=values["query.min_points"],
            split_distance=positive_or_none(values["query.split_distance"]),
            contrast_phrases=split_phrase_list(values["query.contrast_phrases"]),
            test_time_views=values["model.test_time_views"],
            scene_scale=values["model.scene_scale"],
            view_scale_jitter=values["model.view_scale_jitter"],
            num_queries=values["model.num_queries"],
            input_mode=values["model.input_mode"],
            voxel_size=values["scene.voxel_size"],
            max_voxels=values["scene.max_voxels"],
            keep_radius=positive_or_none(values["scene.keep_radius"]),
            max_range=positive_or_none(values["scene.max_range"]),
            dense_features=values["scene.dense_features"],
            keyframe_translation=values["scene.keyframe_translation"],
            keyframe_rotation_deg=values["scene.keyframe_rotation_deg"],
            keyframe_period=positive_or_none(values["scene.keyframe_period"]),
            max_phrases=values["query.max_phrases"],
            max_phrase_length=values["query.max_phrase_length"],
            object_memory=values["memory.enabled"],
            max_objects=values["memory.max_objects"],
            free_space_tolerance=values["memory.free_space_tolerance"],
            segmentation_mode=values["segmentation.mode"],
            region_size=values["segmentation.region_size"],
            region_overlap=values["segmentation.region_overlap"],
            decoded_crops=values["query.decoded_crops"],
            max_encoded_crops=values["segmentation.max_encoded_crops"],
        )


# Where the object memory travels in a map file.
MEMORY_PREFIX = "memory/"
MEMORY_HEADER = "object_memory"

# Candidates (query x phrase) ranked per query when neither query.top_k nor the checkpoint sets it.
DEFAULT_TOP_K = 100


def candidate_count(top_k: int, hyper=None) -> tuple[int, str]:
    """(candidates ranked per query, where the number comes from): ``top_k`` when positive, else
    the checkpoint's ``general.topk_per_image`` (``hyper``: its HyperParameters), else DEFAULT_TOP_K.
    The published SOLE evaluates with 750 (ScanNet200) and 500 (ScanNet)."""
    top_k = int(top_k)
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: the checkpoint's), got {top_k}")
    if top_k > 0:
        return top_k, "query.top_k"
    if hyper is not None and "top_k" in hyper.values:
        return int(hyper.values["top_k"]), hyper.sources["top_k"]
    return DEFAULT_TOP_K, "the default" + (
        ": the checkpoint gives no topk_per_image" if hyper is not None else ""
    )


def with_query_count(config, num_queries: int, log=print):
    """``config`` with ``num_queries`` query seeds (0: unchanged). SOLE's queries are
    non-parametric (farthest point samples of the scene, no learned embedding per query), so their
    number is free at inference: more seeds than trained leave fewer objects without a query of
    their own, at more time per query (measured in sole_ros/weights/README.md)."""
    import dataclasses

    num_queries = int(num_queries)
    if num_queries < 0:
        raise ValueError(f"num_queries must be >= 0 (0: the checkpoint's), got {num_queries}")
    if num_queries == 0 or num_queries == config.num_queries:
        return config
    log(f"{num_queries} queries per pass (trained with {config.num_queries})")
    return dataclasses.replace(config, num_queries=num_queries)


def with_input_mode(config, input_mode: str, log=print):
    """``config`` with the input mode the setting asks for: "auto" keeps the checkpoint's (a
    published SOLE checkpoint: "reference"; one from ``sole-ros train``: what it was trained with,
    "averaged" for files written before the mode was recorded); "reference" or "averaged" force it.
    """
    import dataclasses

    if input_mode not in ("auto", "reference", "averaged"):
        raise ValueError(f"input_mode must be auto, reference or averaged, got {input_mode!r}")
    mode = config.input_mode if input_mode == "auto" else input_mode
    if mode != config.input_mode:
        log(f"input mode {mode} (the checkpoint's is {config.input_mode})")
        config = dataclasses.replace(config, input_mode=mode)
    return config


def split_phrase_list(text: str) -> tuple[str, ...]:
    """ "mug, bowl ,, a red box" -> ("mug", "bowl", "a red box"): a comma-separated parameter."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def find_default_checkpoint() -> str | None:
    """The demo weights shipped with the package, when present."""
    from pathlib import Path

    candidate = Path(__file__).resolve().parent / "weights" / "demo.ckpt"
    return str(candidate) if candidate.exists() else None


def load_segmenter(settings: PipelineSettings, device, log=print):
    """(segmenter, LoadedClip) as the settings ask; ValueError/OSError with the reason. The
    segmenter is an OpenVocabSegmenter, or a MultiViewSegmenter around one when the settings ask
    for several views or another scene scale.

    Two kinds of checkpoint load: a published SOLE .ckpt (sizes read from its tensors; CLIP from
    settings.clip_model / clip_pretrained) and one written by ``sole-ros train`` (its own config,
    and the weights of the CLIP it was trained with when that CLIP was randomly initialised).
    They are told apart by ``hyper_parameters["sole_config"]``, which only the latter has. A
    published file's settings (query count, top-k, DBSCAN distance, voxel size, ...) come from its
    hyper-parameters, ``config.*`` as the reference saves them; the load report names those read
    and those defaulted. settings.top_k 0 takes the published file's ``topk_per_image``, else
    DEFAULT_TOP_K (also for sole_ros's own checkpoints). The
    input mode (settings.input_mode "auto") is "reference" for a published file and the recorded
    ``sole_config.input_mode`` for sole_ros's own ("averaged" when absent, as in the demo weights).
    """
    # Random weights are an explicit choice (tests); otherwise an empty setting means the demo weights.
    checkpoint = settings.checkpoint or (
        None if settings.allow_random_weights else find_default_checkpoint()
    )
    hyper = None
    if checkpoint:
        model, clip, hyper = _load_checkpoint(checkpoint, settings, device, log)
    elif settings.allow_random_weights:
        model, clip = _random_model(settings, device, log)
    else:
        raise ValueError(
            "no checkpoint: set model.checkpoint to a SOLE .ckpt (see `sole-ros weights`), "
            "or model.allow_random_weights for tests"
        )
    if model.config.clip_dim != clip.embed_dim:
        raise ValueError(
            f"the model expects {model.config.clip_dim}-d CLIP features but the CLIP "
            f"{clip.spec.model_name} gives {clip.embed_dim}-d: pick the matching CLIP model"
        )
    segmenter = _open_vocab_segmenter(model, clip, hyper, settings, device, log)
    if settings.test_time_views != 1 or settings.scene_scale != 1.0:
        from sole_ros.inference import MultiViewSegmenter

        segmenter = MultiViewSegmenter(
            segmenter,
            views=settings.test_time_views,
            scene_scale=settings.scene_scale,
            scale_jitter=settings.view_scale_jitter,
        )
    return segmenter, clip


def _load_checkpoint(checkpoint: str, settings: PipelineSettings, device, log):
    """(model, LoadedClip, published hyper-parameters or None) from a checkpoint file: a
    published SOLE one or one written by ``sole-ros train`` (``hyper_parameters["sole_config"]``)."""
    from sole_ros.model import SoleConfig, SoleModel
    from sole_ros.model.checkpoint import (
        config_from_checkpoint,
        load_sole_weights,
        read_checkpoint,
        read_hyper_parameters,
    )

    hyper = None
    data = read_checkpoint(checkpoint)
    hp = data.get("hyper_parameters")
    own_run = isinstance(hp, dict) and "sole_config" in hp
    if own_run:
        config = SoleConfig.from_dict(hp["sole_config"])
    else:
        hyper = read_hyper_parameters(data)
        config = config_from_checkpoint(data, hyper=hyper)
    config = with_input_mode(config, settings.input_mode, log)
    model = SoleModel(with_query_count(config, settings.num_queries, log))
    report = load_sole_weights(model, checkpoint, data=data)
    model = model.to(device).eval()
    log(f"loaded {checkpoint}: {report.describe()}")
    if hyper is not None:
        log(hyper.describe(config.replace(top_k=hyper.values.get("top_k", DEFAULT_TOP_K))))
    clip = _checkpoint_clip(data, hp, own_run, settings, device)
    return model, clip, hyper


def _checkpoint_clip(data: dict, hp, own_run: bool, settings: PipelineSettings, device):
    """The CLIP a checkpoint goes with: its own weights when it carries them, the pretrained CLIP
    a ``sole-ros train`` run named, else the one the settings name."""
    from sole_ros.clip import ClipSpec, load_clip

    if "clip_state_dict" in data:
        # The run's CLIP had random weights: they define its text space and travel with it.
        clip = load_clip(ClipSpec(hp["clip"]["model_name"], None), device)
        clip.model.load_state_dict(data["clip_state_dict"])
        image_tower = hp["clip"].get("image_tower")
        if image_tower:  # trained by `sole-ros train-image-tower`
            clip.image_tower_trained = True
            clip.dense_short_side = int(image_tower["short_side"])
        return clip
    if own_run and hp.get("clip", {}).get("pretrained"):
        return load_clip(ClipSpec(hp["clip"]["model_name"], hp["clip"]["pretrained"]), device)
    return load_clip(ClipSpec(settings.clip_model, settings.clip_pretrained or None), device)


def _random_model(settings: PipelineSettings, device, log):
    """(model, LoadedClip) with random weights, the model sized by ``settings.model_config``."""
    from sole_ros.clip import ClipSpec, load_clip
    from sole_ros.model import SoleConfig, SoleModel

    clip = load_clip(ClipSpec(settings.clip_model, settings.clip_pretrained or None), device)
    config = SoleConfig() if settings.model_config == "paper" else SoleConfig.tiny()
    config = with_input_mode(config, settings.input_mode, log)
    model = SoleModel(with_query_count(config, settings.num_queries, log)).to(device).eval()
    log("WARNING: no checkpoint: running with random weights (answers are meaningless)")
    return model, clip


def _open_vocab_segmenter(model, clip, hyper, settings: PipelineSettings, device, log):
    """The single-pass segmenter around ``model``, its text encoder on ``clip``."""
    from sole_ros.inference import OpenVocabSegmenter
    from sole_ros.model.text import TextEncoder

    top_k, top_k_source = candidate_count(settings.top_k, hyper)
    log(f"{top_k} candidates ranked per query ({top_k_source})")
    text = TextEncoder(device=device, prompt=settings.prompt, loaded=clip)
    return OpenVocabSegmenter(
        model,
        text,
        device=device,
        use_autocast=settings.autocast,
        top_k=top_k,
        dbscan_eps=settings.split_distance,
        contrast_phrases=settings.contrast_phrases,
    )


def build_pipeline(settings: PipelineSettings, log=print) -> "PerceptionPipeline":
    """Load the model and CLIP, build the map. Raises with a reason when weights are missing."""
    from sole_ros.device import resolve_device

    device = resolve_device(settings.device)
    segmenter, clip = load_segmenter(settings, device, log)
    if settings.segmentation_mode != "whole":
        segmenter = RegionSegmenter(
            segmenter,
            settings.region_size,
            settings.region_overlap,
            whole_when_it_fits=settings.segmentation_mode == "auto",
            max_encodings=settings.max_encoded_crops,
        )
    dense = keyframes = None
    feature_dim = 0
    if _dense_features_wanted(settings, clip, log):
        dense, keyframes = _dense_features(settings, clip, device, log)
        feature_dim = dense.feature_dim
    voxel_map = VoxelMap(
        voxel_size=settings.voxel_size,
        max_voxels=settings.max_voxels,
        keep_radius=settings.keep_radius,
        max_range=settings.max_range,
        feature_dim=feature_dim,
    )
    pipeline = PerceptionPipeline(
        voxel_map,
        segmenter,
        dense,
        keyframes,
        QueryLimits(settings.max_phrases, settings.max_phrase_length),
        min_points=settings.min_points,
        memory=ObjectMemory(settings.voxel_size, max_objects=settings.max_objects)
        if settings.object_memory
        else None,
        free_space_tolerance=settings.free_space_tolerance,
        decoded_crops=settings.decoded_crops,
    )
    pipeline.device = device
    return pipeline


def _dense_features_wanted(settings: PipelineSettings, clip, log) -> bool:
    """settings.dense_features, unless the CLIP's image features carry no meaning (said)."""
    if (
        settings.dense_features
        and not clip.image_features_meaningful
        and not settings.allow_random_weights
    ):
        # a random small CLIP whose image tower was never trained: its image features say nothing
        # (SOLE's training drops point features for some scenes, so the model works without them)
        log(
            "dense CLIP features off: the checkpoint's CLIP has a random image tower, its image features "
            "carry no meaning"
        )
        return False
    return settings.dense_features


def _dense_features(settings: PipelineSettings, clip, device, log):
    """(DenseClipFeatures, the KeyframeSelector that picks the frames it encodes), announced."""
    dense = DenseClipFeatures(clip, device=device, short_side=clip.dense_short_side)
    # a tower trained here has seen synthetic renderings only; on real frames it names little
    # right (sole-ros bench tower_real), which a user of a real camera must hear at start-up
    trained_here = ""
    if clip.image_tower_trained:
        trained_here = (
            " (image tower trained by sole-ros train-image-tower on synthetic renderings only: "
            "for a real camera use a pretrained CLIP, or scene.dense_features false)"
        )
    log(
        f"dense CLIP features on: {clip.spec.model_name}{trained_here}, {dense.feature_dim}-d, "
        f"input short side {dense.short_side} px, colour keyframes only"
    )
    keyframes = KeyframeSelector(
        min_translation=settings.keyframe_translation,
        min_rotation_deg=settings.keyframe_rotation_deg,
        max_interval=settings.keyframe_period,
    )
    return dense, keyframes


class PerceptionPipeline:
    def __init__(
        self,
        voxel_map: VoxelMap,
        segmenter=None,
        dense_features: DenseClipFeatures | None = None,
        keyframes: KeyframeSelector | None = None,
        limits: QueryLimits | None = None,
        min_points: int = 0,
        memory: ObjectMemory | None = None,
        free_space_tolerance: float = DEFAULT_FREE_SPACE_TOLERANCE,
        decoded_crops: int = 4,
    ):
        self.map = voxel_map
        self.segmenter = segmenter
        self.dense_features = dense_features
        self.keyframes = keyframes
        self.limits = limits or QueryLimits()
        self.min_points = min_points
        self.segmentation: Segmentation | None = None
        self.memory = memory
        self.free_space_tolerance = free_space_tolerance  # in voxel sizes
        self.decoded_crops = int(decoded_crops)
        self.device = getattr(segmenter, "device", "cpu")
        self._segment_lock = threading.Lock()  # one segmentation at a time
        self._answer_lock = threading.Lock()  # queries, and swapping in a finished segmentation
        self._generation = (
            0  # moves on reset and load: a segmentation of older content is discarded
        )
        self._feature_lock = threading.Lock()
        self._clearing = KeyframeSelector(
            min_translation=CLEAR_TRANSLATION,
            min_rotation_deg=CLEAR_ROTATION_DEG,
            max_interval=CLEAR_PERIOD,
        )
        self._clearing_lock = threading.Lock()

    # --- ingest --------------------------------------------------------------------------------
    def ingest_points(self, points, pose, colors=None, stamp: float = 0.0):
        return self.map.integrate_points(points, pose, colors=colors, stamp=stamp)

    def ingest_rgbd(self, depth, K, pose, color=None, stamp: float = 0.0):
        """Fuse one RGB-D frame; CLIP features are computed for colour keyframes only."""
        features = None
        if self.dense_features is not None and color is not None:
            is_key = self.keyframes is None or self.keyframes.is_keyframe(pose, stamp)
            if is_key:
                with self._feature_lock:
                    features = self.dense_features.frame_features(color)
        summary = self.map.integrate_rgbd(
            depth, K, pose, color=color, stamp=stamp, features=features
        )
        if features is not None and self.keyframes is not None:
            self.keyframes.accept(pose, stamp)  # only once the frame really went in
        memory = self.memory
        if memory is not None:
            with self._clearing_lock:
                clears = self._clearing.accept(pose, stamp)
            if clears:
                self._clear_free_space(memory, depth, K, pose)
        return summary

    def _clear_free_space(self, memory: ObjectMemory, depth, K, pose) -> None:
        """With an object memory, what a depth frame sees through is gone: from the map, so the
        next segmentation no longer finds it, and from the memory once seen so in several frames."""
        tolerance = self.free_space_tolerance * self.map.voxel_size
        depth_m = depth_in_metres(depth, 0.001)
        self.map.clear_seen_through(depth_m, K, pose, tolerance)
        observe_depth_frame(memory, depth_m, K, pose, tolerance)

    # --- segmentation and queries -------------------------------------------------------------
    @property
    def has_model(self) -> bool:
        return self.segmenter is not None

    def needs_segmentation(self) -> bool:
        current = self.segmentation
        return self.map.num_voxels > 0 and (current is None or current.version != self.map.version)

    def segmentation_is_stale(self, max_staleness: float) -> bool:
        """The map holds data the last segmentation lacks, and either there is no segmentation or
        the map's newest data are more than ``max_staleness`` seconds newer than what it saw."""
        current = self.segmentation
        if not self.needs_segmentation():
            return False
        if current is None:
            return True
        return self.map.stamp - current.snapshot.stamp > max_staleness

    def segment(self, force: bool = False) -> Segmentation:
        """Encode the current map for queries (once per map version unless forced)."""
        if self.segmenter is None:
            raise QueryRejected("model not loaded")
        snapshot = self.map.export()
        if snapshot.coords.shape[0] == 0:
            raise QueryRejected("no scene yet: nothing has been accumulated")
        with self._segment_lock:
            current = self.segmentation
            if current is not None and current.version == snapshot.version and not force:
                return current
            generation = self._generation
            start = time.perf_counter()
            # crops re-encode only when their voxels were observed again (RegionSegmenter)
            extra = (
                {"observations": snapshot.observations}
                if isinstance(self.segmenter, RegionSegmenter)
                else {}
            )
            prepared = self.segmenter.prepare_scene(
                snapshot.coords,
                snapshot.colors,
                snapshot.features,
                version=snapshot.version,
                **extra,
            )
            segmentation = Segmentation(snapshot, time.perf_counter() - start)
            with self._answer_lock:
                if generation != self._generation:
                    raise QueryRejected(
                        "the scene was reset or replaced while it was being segmented"
                    )
                self.segmenter.use_scene(prepared)
                self.segmentation = segmentation
            if self.memory is not None:
                self._remember(segmentation)
            return segmentation

    def _remember(self, segmentation: Segmentation) -> None:
        """Give the parts of a finished segmentation the object memory's stable ids."""
        with self._answer_lock:
            if self.segmentation is not segmentation:
                return
            parts = self._large_enough(self.segmenter.segment_all())
            memory = self.memory  # a reset from now on starts another; this one may be updated
        snapshot = segmentation.snapshot
        detections = detections_from_instances(parts, snapshot)
        ids = memory.update(
            detections,
            stamp=snapshot.stamp,
            present_keys=keys_from_centres(snapshot.coords, snapshot.voxel_size),
        )
        segmentation.objects = list(zip(ids, parts))
        segmentation.remembered = RememberedParts.build(ids, parts, [d.feature for d in detections])

    def _object_ids(self, instances, snapshot) -> list[int]:
        if self.memory is None:
            return []
        return [
            self.memory.identify(
                keys_from_centres(snapshot.coords[i.point_indices], snapshot.voxel_size)
            )
            or 0
            for i in instances
        ]

    def query(self, phrases, max_results: int, min_score: float = 0.0) -> QueryAnswer:
        phrases = self.limits.check(phrases)
        if not 0.0 <= min_score <= 1.0 or not np.isfinite(min_score):
            raise QueryRejected(f"min_score must be within 0..1, got {min_score}")
        if self.segmenter is None:
            raise QueryRejected("model not loaded")
        with self._answer_lock:
            if self.segmentation is None:
                raise QueryRejected("no scene yet: nothing has been accumulated and segmented")
            segmentation = self.segmentation
            if self._answers_from_memory(segmentation):
                instances, ids = self._query_memory(segmentation, phrases, max_results, min_score)
                return QueryAnswer(instances, segmentation, ids)
            instances = self._large_enough(self.segmenter.query(phrases, min_score=min_score))[
                :max_results
            ]
        # naming the answers needs no lock: they and their segmentation no longer change
        return QueryAnswer(
            instances, segmentation, self._object_ids(instances, segmentation.snapshot)
        )

    def _answers_from_memory(self, segmentation: Segmentation) -> bool:
        """Whether a query ranks the remembered objects instead of decoding every crop: with the
        memory, in regions mode, once the map has more crops than a query may decode."""
        segmenter = self.segmenter
        return (
            segmentation.remembered is not None
            and self.decoded_crops > 0
            and isinstance(segmenter, RegionSegmenter)
            and segmenter.crop_count() > self.decoded_crops
        )

    def _query_memory(
        self, segmentation: Segmentation, phrases, max_results: int, min_score: float
    ):
        """Answers and ids for a map of many crops: every remembered part ranked by its stored
        embedding and pooled CLIP feature (object_ranking.py); the crops holding the best of them,
        at most ``decoded_crops``, answered by SOLE itself (the decoder with the phrases as text
        keys, on their cached encodings); the parts of the other crops with their estimates."""
        segmenter, remembered = self.segmenter, segmentation.remembered
        contrast = [c for c in segmenter.contrast_phrases if c not in phrases]
        model = segmenter.model
        estimated, phrase_of = estimate_scores(
            remembered,
            segmenter.encode_text(phrases + contrast),
            model.bg_feature,
            len(phrases),
            scale=model.config.logit_scale,
        )
        order = [
            int(i)
            for i in np.argsort(-estimated, kind="stable")
            if remembered.instances[i].num_points >= self.min_points
        ]
        cells = segmenter.cells_holding(
            [remembered.instances[i] for i in order], self.decoded_crops
        )
        decoded = self._large_enough(segmenter.query(phrases, min_score=min_score, cells=cells))
        found = [(instance.score, instance, None) for instance in decoded]
        for i in order:
            instance = remembered.instances[i]
            score = float(estimated[i])
            if (
                score > 0
                and score >= min_score
                and segmenter.core_cell(instance.centroid[:2]) not in cells
            ):
                found.append(
                    (
                        score,
                        dataclasses.replace(
                            instance, label=phrases[int(phrase_of[i])], score=score
                        ),
                        remembered.ids[i],
                    )
                )
        found.sort(key=lambda item: -item[0])
        found = found[:max_results]
        instances = [instance for _, instance, _ in found]
        named = iter(
            self._object_ids(
                [instance for _, instance, known in found if known is None], segmentation.snapshot
            )
        )
        return instances, [known if known is not None else next(named) for _, _, known in found]

    def full_segmentation(self) -> list:
        """The class-agnostic segmentation of the segmented scene (every part of every mask)."""
        with self._answer_lock:
            current = self.segmentation
            if current is not None and current.objects:  # computed for the memory already
                return self._large_enough([instance for _, instance in current.objects])
            return self._large_enough(self.segmenter.segment_all())

    def _large_enough(self, instances) -> list:
        # after ranking, so a dropped fragment never takes the place of a larger answer
        return [i for i in instances if i.num_points >= self.min_points]

    def reset(self) -> None:
        with self._answer_lock:
            self._generation += 1
            self.map.reset()
            self.segmentation = None
            self._forget_encodings()
            self._forget_objects()
            if self.keyframes is not None:
                self.keyframes.reset()
            with self._clearing_lock:
                self._clearing.reset()

    def save(self, path) -> None:
        """The map, and the object memory with it (arrays ``memory/...``, header ``object_memory``)."""
        memory = self.memory
        if memory is None:
            self.map.save(path)
            return
        arrays, meta = memory.to_arrays()
        self.map.save(
            path,
            {MEMORY_PREFIX + name: array for name, array in arrays.items()},
            {MEMORY_HEADER: meta},
        )

    def _saved_memory(self, saved):
        """The memory a saved map carries (validated, ValueError with the reason), a new empty
        one when it carries none, or None without a memory here."""
        if self.memory is None:
            return None
        meta = saved.header.get(MEMORY_HEADER)
        if meta is None:
            return self.memory.emptied()
        arrays = {
            name[len(MEMORY_PREFIX) :]: array
            for name, array in saved.arrays.items()
            if name.startswith(MEMORY_PREFIX)
        }
        try:
            return ObjectMemory.from_arrays(arrays, meta, voxel_size=self.map.voxel_size)
        except (TypeError, KeyError) as error:
            raise ValueError(f"the object memory in the file is unusable: {error}") from None

    def load(self, path) -> None:
        """Replace the map with a saved one; the old map stays when the file is unusable. The file
        is read and validated before any lock is taken: only the swap waits for a running query."""
        saved = self.map.read_saved(path)
        memory = self._saved_memory(saved)
        with self._answer_lock:
            self._generation += 1
            self.map.restore_saved(saved)
            self.segmentation = None
            self._forget_encodings()
            self.memory = memory

    def _forget_encodings(self) -> None:
        """Crops encoded for the old map are not reused for a new one (RegionSegmenter)."""
        if isinstance(self.segmenter, RegionSegmenter):
            self.segmenter.forget_encodings()

    def _forget_objects(self) -> None:
        """A reset scene starts a new memory (new ids keep counting up)."""
        if self.memory is not None:
            self.memory = self.memory.emptied()
