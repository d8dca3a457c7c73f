"""Every parameter of sole_node in one table, without ROS.

The node declares its parameters from here (sole_ros/ros/parameters.py adds the ROS descriptors),
the `segment` and `bag` commands build their options from it (sole_ros/cli/model_options.py), and
config/sole.yaml and docs/PARAMETERS.md are checked against it by the tests. Both paths turn the
values into PipelineSettings with ``PipelineSettings.from_parameters``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = True  # most take effect at configure time

    @property
    def group(self) -> str:
        """ "model" for model.checkpoint; "" for the ungrouped ones (device, fixed_frame, ...)."""
        return self.name.split(".", 1)[0] if "." in self.name else ""

    @property
    def has_range(self) -> bool:
        return (
            self.minimum is not None
            and isinstance(self.default, (int, float))
            and not isinstance(self.default, bool)
        )

    def range_text(self) -> str:
        """ "1..64", "0.05..20": the bounds as docs/PARAMETERS.md writes them."""

        def number(x):
            return (
                str(int(x)) if isinstance(self.default, int) or float(x).is_integer() else f"{x:g}"
            )

        return f"{number(self.minimum)}..{number(self.maximum)}"

    def problem(self, value) -> str | None:
        """Why ``value`` is unusable for this parameter ("must be within 1..64"), or None."""
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(self.choices)}"
        if self.has_range and not self.minimum <= value <= self.maximum:  # NaN fails too
            return f"must be within {self.range_text()}"
        return None


PARAMETERS: tuple[Param, ...] = (
    Param("fixed_frame", "map", "Frame the scene is accumulated in and answers are given in."),
    Param(
        "device", "auto", "Where the model runs: auto (CUDA when available), cpu, cuda or cuda:N."
    ),
    Param(
        "autostart",
        True,
        "Configure and activate on start-up (else wait for lifecycle transitions).",
    ),
    # model
    Param(
        "model.checkpoint",
        "",
        "SOLE checkpoint: a published .ckpt or a sole_ros checkpoint. "
        "Empty: the demo weights shipped with the package, when present.",
    ),
    Param(
        "model.config",
        "paper",
        "Architecture when the checkpoint does not carry one.",
        choices=("paper", "tiny"),
    ),
    Param(
        "model.allow_random_weights",
        False,
        "With model.checkpoint empty, use randomly initialised "
        "weights instead of the shipped demo weights (tests only: answers are meaningless).",
    ),
    Param("model.clip_model", "ViT-L-14", "open_clip architecture of the text/image encoder."),
    Param(
        "model.clip_pretrained",
        "openai",
        "open_clip weights tag, or a path to a local weights file.",
    ),
    Param("model.prompt", "a {} in a scene.", "Prompt template for query phrases."),
    Param("model.autocast", False, "Mixed precision on the GPU (ignored on the CPU)."),
    Param(
        "model.test_time_views",
        1,
        "Segment this many turned, scaled views of the scene and keep "
        "what they agree on (test-time augmentation; costs as many model runs); 1: SOLE's single pass.",
        1,
        64,
    ),
    Param(
        "model.num_queries",
        0,
        "Query seeds (farthest point samples) per model pass; 0: as many as the "
        "checkpoint was trained with. More find more small objects, at more time per query.",
        0,
        4096,
    ),
    Param(
        "model.input_mode",
        "auto",
        "How points become the model's input: reference (the published "
        "SOLE's: first point per voxel, its CUDA sampler's query seeds), averaged (mean per voxel: "
        "sole_ros's training) or auto (the checkpoint's: published -> reference).",
        choices=("auto", "reference", "averaged"),
    ),
    Param(
        "model.scene_scale",
        1.0,
        "Scale the scene by this before the model, for a model that works "
        "best at another size (the demo weights on real tabletop scans: 0.65).",
        0.05,
        20.0,
    ),
    Param(
        "model.view_scale_jitter",
        0.1,
        "The extra views' scales vary by up to this fraction of model.scene_scale.",
        0.0,
        0.9,
    ),
    # scene
    Param("scene.voxel_size", 0.02, "Voxel edge length (m).", 0.005, 0.5),
    Param(
        "scene.max_voxels",
        500_000,
        "Bound on the map size; the oldest-seen voxels are evicted beyond it.",
        1_000,
        50_000_000,
    ),
    Param(
        "scene.keep_radius",
        0.0,
        "Evict voxels farther than this from the sensor (m); 0: off.",
        0.0,
        1000.0,
    ),
    Param(
        "scene.max_range",
        0.0,
        "Ignore measurements farther than this from the sensor (m); 0: off.",
        0.0,
        1000.0,
    ),
    Param(
        "scene.directory",
        "",
        "The folder ~/save_scene and ~/load_scene read and write; their "
        "requests name files inside it. Empty: $ROS_HOME/sole_ros/scenes (~/.ros/sole_ros/scenes).",
    ),
    Param("scene.dense_features", True, "Fuse dense CLIP image features from colour keyframes."),
    Param(
        "scene.keyframe_translation",
        0.05,
        "Minimum camera motion between keyframes (m).",
        0.0,
        10.0,
    ),
    Param(
        "scene.keyframe_rotation_deg",
        5.0,
        "Minimum camera rotation between keyframes (deg).",
        0.0,
        180.0,
    ),
    Param(
        "scene.keyframe_period",
        1.0,
        "A keyframe at least this often while still (s); 0: never.",
        0.0,
        3600.0,
    ),
    # inputs
    Param("inputs.cloud", True, "Subscribe to the depth point cloud topic `points`."),
    Param(
        "inputs.rgbd", True, "Subscribe to `depth/image`, `depth/camera_info` (and `color/image`)."
    ),
    Param("inputs.use_color", True, "Pair depth images with `color/image` (registered to depth)."),
    Param(
        "inputs.qos",
        "auto",
        "Reliability of the input subscriptions. auto: follow the publishers "
        "(reliable when every publisher of the topic is reliable, else best effort; re-checked as "
        "publishers come and go); reliable or best_effort: fixed.",
        choices=("auto", "reliable", "best_effort"),
    ),
    Param(
        "inputs.sync_slop", 0.05, "Largest stamp difference of a depth/colour pair (s).", 0.0, 1.0
    ),
    Param(
        "inputs.queue_size",
        30,
        "History depth of the input subscriptions and of the depth/colour "
        "pairing (messages): a second at 30 Hz, so a busy moment of the executor loses none.",
        1,
        100,
    ),
    Param(
        "inputs.max_stamp_offset",
        86400.0,
        "Sensor messages stamped zero, or further than this from the "
        "node's clock (s), are dropped and counted as implausible stamps (a driver without a clock, a "
        "wrong time zone): fused, they would date the map wrongly.",
        1.0,
        1.0e9,
    ),
    Param(
        "inputs.max_pending",
        30,
        "Frames waiting to be fused at most; beyond it the oldest is dropped "
        "and counted as too old (the node fuses slower than the sensors publish).",
        1,
        1000,
    ),
    Param(
        "inputs.sync_backend",
        "auto",
        "Depth/colour synchroniser.",
        choices=("auto", "builtin", "message_filters"),
    ),
    # poses
    Param(
        "pose.source",
        "tf",
        "Where sensor poses come from: tf (the chain from fixed_frame to each "
        "message's frame_id on /tf and /tf_static, through tf2_ros when installed) or topic (`pose` "
        "topic plus pose.sensor_extrinsic).",
        choices=("tf", "topic"),
    ),
    Param(
        "pose.topic_type",
        "odometry",
        "Message type of the `pose` topic.",
        choices=("odometry", "pose_stamped", "transform_stamped"),
    ),
    Param(
        "pose.sensor_extrinsic",
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        "Sensor pose in the pose topic's child frame: x y z (m) roll pitch yaw (rad).",
    ),
    Param(
        "pose.timeout",
        0.5,
        "How long a frame waits for its pose (and its camera info) to arrive (s): "
        "transforms travel on their own topic and may come late or be resent.",
        0.0,
        5.0,
    ),
    # segmentation and queries
    Param(
        "segmentation.period",
        5.0,
        "Segment the scene this often when it changed (s); 0: only on demand (~/segment).",
        0.0,
        3600.0,
    ),
    Param(
        "segmentation.mode",
        "auto",
        "whole: SOLE on the whole map at once; regions: the map cut into "
        "overlapping square crops (segmentation.region_size), only crops that changed segmented again, "
        "objects across crop borders merged; auto: whole while the map fits in one crop, regions beyond.",
        choices=("auto", "whole", "regions"),
    ),
    Param("segmentation.region_size", 4.0, "Side of a crop (m), all heights.", 1.0, 100.0),
    Param(
        "segmentation.region_overlap",
        0.5,
        "How far neighbouring crops overlap (m); less than half the crop's side.",
        0.0,
        49.0,
    ),
    Param(
        "segmentation.max_encoded_crops",
        16,
        "Crops whose encodings are kept for reuse, at most; beyond it "
        "the oldest are released (memory stays bounded on a growing map) and encoded again only when a "
        "segmentation or query needs them; queries from the memory decode only kept crops. 0: keep all.",
        0,
        100_000,
    ),
    Param(
        "query.decoded_crops",
        4,
        "With the object memory and a map of more crops than this, a query "
        "ranks the remembered objects (their decoder embeddings and pooled CLIP features) and runs the "
        "decoder, with the phrase as its text key, on the crops of the best of them only: at most this "
        "many. 0: the decoder on every crop (a query's time then grows with the map).",
        0,
        10_000,
    ),
    Param(
        "query.max_staleness",
        10.0,
        "A query segments the map first (or waits for the running "
        "segmentation) when the last segmentation is older than the map's newest data by more than "
        "this (s).",
        0.0,
        3600.0,
    ),
    Param("query.max_phrases", 16, "Most phrases in one query.", 1, 256),
    Param("query.max_phrase_length", 256, "Longest phrase (characters).", 1, 4096),
    Param("query.default_max_results", 10, "max_results used when a request gives 0.", 1, 1000),
    Param(
        "query.top_k",
        0,
        "Candidates (query x phrase) kept before the score threshold; 0: the "
        "checkpoint's (a published SOLE file's topk_per_image: 750 for ScanNet200, 500 for ScanNet), "
        "else 100.",
        0,
        10_000,
    ),
    Param(
        "query.min_points",
        0,
        "Answers with fewer points than this are dropped (stray fragments of a "
        "large scene); 0: keep all.",
        0,
        1_000_000,
    ),
    Param(
        "query.split_distance",
        0.0,
        "Masks are split into parts connected within this distance (m); "
        "0: the checkpoint's (SOLE: 0.95 for rooms; the demo weights: 0.05 for tabletops).",
        0.0,
        10.0,
    ),
    # One comma-separated string, not a string array: rclpy types an empty-list default as a byte
    # array and then refuses a string-array value.
    Param(
        "query.contrast_phrases",
        "",
        "Comma-separated names of other things in the scene (e.g. "
        "'mug, bowl, bottle'). Each query must beat them, not only the background, but they are never "
        "answered; empty: SOLE's binary query.",
    ),
    # memory
    Param(
        "memory.enabled",
        True,
        "Keep an object memory: objects keep their id across segmentations "
        "(ObjectInstance.id, ~/objects), saved with the scene; a reset starts a new one. On maps of many "
        "crops, queries rank its objects (query.decoded_crops).",
    ),
    Param(
        "memory.max_objects",
        500,
        "Objects remembered at most; beyond it the least recently seen leave first.",
        1,
        100_000,
    ),
    Param(
        "memory.free_space_tolerance",
        2.5,
        "With the memory on, what a depth frame sees through is gone: "
        "map voxels more than this many voxel sizes in front of the measured surface are removed, and "
        "an object seen through in 3 frames is retired (never merely for being out of view). A frame clears "
        "once the camera moved 5 cm or turned 5 degrees since the last one that did, or 0.5 s later.",
        0.5,
        20.0,
    ),
    # outputs
    Param(
        "output.full_segmentation",
        False,
        "Publish the full class-agnostic segmentation on "
        "~/instances after each segmentation instead of the latest answer.",
        read_only=False,
    ),
    Param("output.scene_period", 2.0, "Publish ~/scene this often (s); 0: never.", 0.0, 3600.0),
    Param("output.diagnostics_period", 1.0, "Publish /diagnostics this often (s).", 0.1, 60.0),
)

BY_NAME = {p.name: p for p in PARAMETERS}


def defaults() -> dict[str, Any]:
    """Every parameter's default, by name (the values a node started without overrides has)."""
    return {p.name: p.default for p in PARAMETERS}


def validate(values: dict[str, Any]) -> list[str]:
    """Reasons the given parameter values are unusable: choices and ranges (rclpy enforces the
    ranges of declared parameters too; the command line relies on this check)."""
    problems = []
    for name, value in values.items():
        p = BY_NAME.get(name)
        reason = p.problem(value) if p else None
        if reason:
            problems.append(f"{name} {reason}, not {value!r}")
    size, overlap = (
        values.get("segmentation.region_size"),
        values.get("segmentation.region_overlap"),
    )
    if (
        isinstance(size, (int, float))
        and isinstance(overlap, (int, float))
        and not overlap < size / 2
    ):
        problems.append(
            f"segmentation.region_overlap must be less than half of segmentation.region_size "
            f"({size}), not {overlap!r}"
        )
    return problems
