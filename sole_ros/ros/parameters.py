"""Every parameter of sole_node, declared in one table.

The node declares them from here (with descriptors and ranges); config/sole.yaml and the README
table are checked against this table by the tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = True  # most take effect at configure time

    def descriptor(self) -> ParameterDescriptor:
        kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
        if isinstance(self.default, list):
            kind = ParameterType.PARAMETER_DOUBLE_ARRAY
        else:
            kind = kinds[type(self.default)]
        text = self.description + (f" One of: {', '.join(self.choices)}." if self.choices else "")
        descriptor = ParameterDescriptor(name=self.name, type=kind, description=text,
                                         read_only=self.read_only)
        if self.minimum is not None and isinstance(self.default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(self.minimum), to_value=float(self.maximum), step=0.0)]
        elif self.minimum is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.minimum), to_value=int(self.maximum), step=1)]
        return descriptor


PARAMETERS: tuple[Param, ...] = (
    Param("fixed_frame", "map", "Frame the scene is accumulated in and answers are given in."),
    Param("device", "auto", "Where the model runs: auto (CUDA when available), cpu, cuda or cuda:N."),
    Param("autostart", True, "Configure and activate on start-up (else wait for lifecycle transitions)."),
    # model
    Param("model.checkpoint", "", "SOLE checkpoint: a published .ckpt or a sole_ros checkpoint. "
          "Empty: the demo weights shipped with the package, when present."),
    Param("model.config", "paper", "Architecture when the checkpoint does not carry one.",
          choices=("paper", "tiny")),
    Param("model.allow_random_weights", False, "With model.checkpoint empty, use randomly initialised "
          "weights instead of the shipped demo weights (tests only: answers are meaningless)."),
    Param("model.clip_model", "ViT-L-14", "open_clip architecture of the text/image encoder."),
    Param("model.clip_pretrained", "openai", "open_clip weights tag, or a path to a local weights file."),
    Param("model.prompt", "a {} in a scene.", "Prompt template for query phrases."),
    Param("model.autocast", False, "Mixed precision on the GPU (ignored on the CPU)."),
    Param("model.test_time_views", 1, "Segment this many turned, scaled views of the scene and keep "
          "what they agree on (test-time augmentation; costs as many model runs); 1: SOLE's single pass.",
          1, 64),
    Param("model.num_queries", 0, "Query seeds (farthest point samples) per model pass; 0: as many as the "
          "checkpoint was trained with. More find more small objects, at more time per query.", 0, 4096),
    Param("model.scene_scale", 1.0, "Scale the scene by this before the model, for a model that works "
          "best at another size (the demo weights on real tabletop scans: 0.65).", 0.05, 20.0),
    Param("model.view_scale_jitter", 0.1, "The extra views' scales vary by up to this fraction of "
          "model.scene_scale.", 0.0, 0.9),
    # scene
    Param("scene.voxel_size", 0.02, "Voxel edge length (m).", 0.005, 0.5),
    Param("scene.max_voxels", 500_000, "Bound on the map size; the oldest-seen voxels are evicted "
          "beyond it.", 1_000, 50_000_000),
    Param("scene.keep_radius", 0.0, "Evict voxels farther than this from the sensor (m); 0: off.",
          0.0, 1000.0),
    Param("scene.max_range", 0.0, "Ignore measurements farther than this from the sensor (m); 0: off.",
          0.0, 1000.0),
    Param("scene.dense_features", True, "Fuse dense CLIP image features from colour keyframes."),
    Param("scene.keyframe_translation", 0.05, "Minimum camera motion between keyframes (m).", 0.0, 10.0),
    Param("scene.keyframe_rotation_deg", 5.0, "Minimum camera rotation between keyframes (deg).",
          0.0, 180.0),
    Param("scene.keyframe_period", 1.0, "A keyframe at least this often while still (s); 0: never.",
          0.0, 3600.0),
    # inputs
    Param("inputs.cloud", True, "Subscribe to the depth point cloud topic `points`."),
    Param("inputs.rgbd", True, "Subscribe to `depth/image`, `depth/camera_info` (and `color/image`)."),
    Param("inputs.use_color", True, "Pair depth images with `color/image` (registered to depth)."),
    Param("inputs.qos", "auto", "Reliability of the input subscriptions. auto: follow the publishers "
          "(reliable when every publisher of the topic is reliable, else best effort; re-checked as "
          "publishers come and go); reliable or best_effort: fixed.",
          choices=("auto", "reliable", "best_effort")),
    Param("inputs.sync_slop", 0.05, "Largest stamp difference of a depth/colour pair (s).", 0.0, 1.0),
    Param("inputs.queue_size", 5, "Queue depth of input subscriptions.", 1, 100),
    Param("inputs.sync_backend", "auto", "Depth/colour synchroniser.",
          choices=("auto", "builtin", "message_filters")),
    # poses
    Param("pose.source", "tf", "Where sensor poses come from: tf (the chain from fixed_frame to each "
          "message's frame_id on /tf and /tf_static, through tf2_ros when installed) or topic (`pose` "
          "topic plus pose.sensor_extrinsic).", choices=("tf", "topic")),
    Param("pose.topic_type", "odometry", "Message type of the `pose` topic.",
          choices=("odometry", "pose_stamped", "transform_stamped")),
    Param("pose.sensor_extrinsic", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
          "Sensor pose in the pose topic's child frame: x y z (m) roll pitch yaw (rad)."),
    Param("pose.timeout", 0.1, "How long to wait for a pose at a message's stamp (s).", 0.0, 5.0),
    # segmentation and queries
    Param("segmentation.period", 5.0, "Segment the scene this often when it changed (s); 0: only "
          "on demand (~/segment).", 0.0, 3600.0),
    Param("query.max_staleness", 10.0, "A query segments the map first (or waits for the running "
          "segmentation) when the last segmentation is older than the map's newest data by more than "
          "this (s).", 0.0, 3600.0),
    Param("query.max_phrases", 16, "Most phrases in one query.", 1, 256),
    Param("query.max_phrase_length", 256, "Longest phrase (characters).", 1, 4096),
    Param("query.default_max_results", 10, "max_results used when a request gives 0.", 1, 1000),
    Param("query.top_k", 100, "Candidates (query x phrase) kept before the score threshold.", 1, 10_000),
    Param("query.min_points", 0, "Answers with fewer points than this are dropped (stray fragments of a "
          "large scene); 0: keep all.", 0, 1_000_000),
    Param("query.split_distance", 0.0, "Masks are split into parts connected within this distance (m); "
          "0: the checkpoint's (SOLE: 0.95 for rooms; the demo weights: 0.05 for tabletops).", 0.0, 10.0),
    # One comma-separated string, not a string array: rclpy types an empty-list default as a byte
    # array and then refuses a string-array value.
    Param("query.contrast_phrases", "", "Comma-separated names of other things in the scene (e.g. "
          "'mug, bowl, bottle'). Each query must beat them, not only the background, but they are never "
          "answered; empty: SOLE's binary query."),
    # outputs
    Param("output.full_segmentation", False, "Publish the full class-agnostic segmentation on "
          "~/instances after each segmentation instead of the latest answer.", read_only=False),
    Param("output.scene_period", 2.0, "Publish ~/scene this often (s); 0: never.", 0.0, 3600.0),
    Param("output.diagnostics_period", 1.0, "Publish /diagnostics this often (s).", 0.1, 60.0),
)

BY_NAME = {p.name: p for p in PARAMETERS}


def declare_all(node) -> None:
    for p in PARAMETERS:
        node.declare_parameter(p.name, p.default, p.descriptor())


def validate(values: dict[str, Any]) -> list[str]:
    """Reasons the given parameter values are unusable (choices; ranges are enforced by rclpy)."""
    problems = []
    for name, value in values.items():
        p = BY_NAME.get(name)
        if p and p.choices and value not in p.choices:
            problems.append(f"{name}={value!r} is not one of {', '.join(p.choices)}")
    return problems
