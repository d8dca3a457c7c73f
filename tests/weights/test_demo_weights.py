"""The shipped demo weights answer the demo's three queries with the right objects, through the
library path the node uses (RGB-D frames fused into the map, 16 test-time views, contrast phrases).

This guards the committed sole_ros/weights/demo.ckpt and the export and view settings it depends
on: a retrained or broken file, or a change to fusion or inference that loses the objects, fails it.
"""

from sole_ros.model.text import object_phrase
from sole_ros.pipeline import PipelineSettings, build_pipeline, find_default_checkpoint
from sole_ros.ros.demo import DEFAULT_QUERIES, DEMO_CLASSES, DEMO_SCENE_SEED
from sole_ros.ros.sensor_player import render_demo_frames
from sole_ros.synthetic import CLASS_NAMES


def test_the_demo_weights_find_the_demo_scenes_mug_bowl_and_bottle():
    assert find_default_checkpoint() is not None, "sole_ros/weights/demo.ckpt is missing"
    scene, frames = render_demo_frames(DEMO_SCENE_SEED, 16, kind="tabletop", classes=DEMO_CLASSES)
    pipeline = build_pipeline(
        PipelineSettings(device="cpu", contrast_phrases=tuple(CLASS_NAMES), test_time_views=16),
        log=lambda *_: None,
    )
    for frame in frames:
        pipeline.ingest_rgbd(frame.depth, frame.K, frame.pose, color=frame.color, stamp=frame.stamp)
    coords = pipeline.segment().snapshot.coords

    for phrase in DEFAULT_QUERIES:
        answers = pipeline.query([phrase], max_results=1).instances
        assert answers, f"no answer to {phrase!r}"
        points = coords[answers[0].point_indices]
        class_name = object_phrase(phrase)
        # a voxel (2 cm) of slack around the object's box; most of the answer must be the object
        inside = next(o for o in scene.objects if o.class_name == class_name).share_inside(
            points, slack=0.02
        )
        assert inside >= 0.8, (
            f"{phrase!r}: {inside:.0%} of the best answer lies on the {class_name}"
        )
