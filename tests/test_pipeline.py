"""The ROS-free perception pipeline: synthetic RGB-D in, segmentation, queries, checkpoints."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from sole_ros.inference.multi_view import MultiViewSegmenter
from sole_ros.pipeline import (
    PipelineSettings,
    QueryRejected,
    build_pipeline,
    load_segmenter,
    split_phrase_list,
)
from sole_ros.synthetic import generate_scene, render_sequence

TINY = dict(
    model_config="tiny",
    allow_random_weights=True,
    clip_model="sole-tiny",
    clip_pretrained=None,
    device="cpu",
    voxel_size=0.03,
    keyframe_translation=0.0,
    keyframe_rotation_deg=0.0,
)


@pytest.fixture(scope="module")
def frames():
    scene = generate_scene(seed=2, kind="tabletop", classes=["mug", "bowl", "bottle"])
    return list(render_sequence(scene, 4, width=128, height=96, seed=2))


@pytest.fixture(scope="module")
def pipeline(frames):
    p = build_pipeline(PipelineSettings(**TINY), log=lambda *_: None)
    for f in frames:
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=100.0 + f.stamp)
    return p


def test_ingest_fuses_geometry_colour_and_features(pipeline, frames):
    snapshot = pipeline.map.export()
    assert len(snapshot) > 1000
    assert snapshot.features is not None and snapshot.has_feature.mean() > 0.5
    assert snapshot.stamp == pytest.approx(100.0 + frames[-1].stamp)


def test_queries_need_a_segmented_scene_then_answer(pipeline):
    with pytest.raises(QueryRejected, match="no scene yet"):
        pipeline.query(["mug"], max_results=3)
    assert pipeline.needs_segmentation()
    seg = pipeline.segment()
    assert not pipeline.needs_segmentation()
    assert pipeline.segment() is seg  # cached per map version
    answer = pipeline.query(["mug", "bowl"], max_results=4)
    assert 0 < len(answer.instances) <= 4
    assert answer.stamp == seg.snapshot.stamp
    n = len(seg.snapshot)
    for inst in answer.instances:
        assert inst.label in ("mug", "bowl")
        assert inst.point_indices.max() < n
        pts = seg.snapshot.coords[inst.point_indices]
        np.testing.assert_allclose(inst.centroid, pts.mean(0), atol=1e-5)


def test_min_points_drops_small_answers_after_ranking(pipeline):
    """query.min_points: answers (and full-segmentation parts) smaller than it are left out, and the
    larger ones keep their order; the scene and the segmentation are untouched."""
    pipeline.segment()
    everything = pipeline.query(["mug", "bowl"], max_results=1000).instances
    parts = pipeline.full_segmentation()
    sizes = sorted({i.num_points for i in everything})
    assert len(sizes) >= 2, "the random model should give answers of several sizes"
    threshold = sizes[len(sizes) // 2]
    try:
        pipeline.min_points = threshold
        kept = pipeline.query(["mug", "bowl"], max_results=1000).instances
        kept_parts = pipeline.full_segmentation()
    finally:
        pipeline.min_points = 0
    expected = [(i.label, i.score, i.num_points) for i in everything if i.num_points >= threshold]
    assert [(i.label, i.score, i.num_points) for i in kept] == expected
    assert 0 < len(kept) < len(everything)
    assert [i.num_points for i in kept_parts] == [
        i.num_points for i in parts if i.num_points >= threshold
    ]
    assert len(pipeline.query(["mug", "bowl"], max_results=1000).instances) == len(everything)


@pytest.mark.parametrize(
    "phrases, reason",
    [
        ([], "empty query"),
        ([""], "empty query"),
        (["mug", " "], "empty phrase"),
        (["m" * 300], "too long"),
        (["a"] * 17, "too many"),
    ],
)
def test_bad_queries_are_rejected_with_a_reason(pipeline, phrases, reason):
    with pytest.raises(QueryRejected, match=reason):
        pipeline.query(phrases, max_results=1)


def test_concurrent_queries_all_answer(pipeline):
    pipeline.segment()
    results, errors = [], []

    def ask(i):
        try:
            results.append(pipeline.query([f"object {i}"], max_results=2))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(results) == 4


def test_reset_forgets_scene_and_segmentation(frames):
    p = build_pipeline(PipelineSettings(**TINY), log=lambda *_: None)
    p.ingest_rgbd(frames[0].depth, frames[0].K, frames[0].pose, color=frames[0].color, stamp=1.0)
    p.segment()
    p.reset()
    assert p.map.num_voxels == 0 and p.segmentation is None
    with pytest.raises(QueryRejected, match="no scene yet"):
        p.segment()


def test_missing_checkpoint_is_a_clear_error(monkeypatch):
    # as in a checkout without the shipped demo weights (sole_ros/weights/demo.ckpt)
    monkeypatch.setattr("sole_ros.pipeline.find_default_checkpoint", lambda: None)
    with pytest.raises(ValueError, match="no checkpoint"):
        load_segmenter(
            PipelineSettings(**{**TINY, "allow_random_weights": False}), torch.device("cpu")
        )
    with pytest.raises((OSError, ValueError, RuntimeError)):
        load_segmenter(
            PipelineSettings(**{**TINY, "checkpoint": "/nonexistent/sole.ckpt"}),
            torch.device("cpu"),
        )


def test_training_checkpoint_loads_with_its_own_clip(tmp_path):
    """A checkpoint from the training code carries its config and its random CLIP's weights."""
    from sole_ros.clip import ClipSpec, load_clip
    from sole_ros.model import SoleConfig, SoleModel
    from sole_ros.training.checkpointing import save_checkpoint
    from sole_ros.training.config import TrainConfig

    torch.manual_seed(3)
    config = SoleConfig.tiny(num_queries=7)
    model = SoleModel(config)
    clip = load_clip(ClipSpec.tiny(), "cpu")
    path = save_checkpoint(
        tmp_path / "run.pt",
        model,
        config,
        TrainConfig(model_size="tiny", clip_model="sole-tiny", clip_pretrained=None),
        clip=clip,
    )
    segmenter, loaded_clip = load_segmenter(
        PipelineSettings(**{**TINY, "checkpoint": str(path)}), torch.device("cpu")
    )
    assert segmenter.model.config.num_queries == 7
    for name, value in model.state_dict().items():
        assert torch.equal(segmenter.model.state_dict()[name].cpu(), value), name
    for name, value in clip.model.state_dict().items():
        assert torch.equal(loaded_clip.model.state_dict()[name].cpu(), value), name
    # The queries are farthest-point seeds, not learned: model.num_queries changes their count at
    # inference with the same weights.
    more, _ = load_segmenter(
        PipelineSettings(**{**TINY, "checkpoint": str(path), "num_queries": 20}),
        torch.device("cpu"),
    )
    assert more.model.config.num_queries == 20
    for name, value in model.state_dict().items():
        assert torch.equal(more.model.state_dict()[name].cpu(), value), name
    rng = np.random.default_rng(0)
    more.set_scene(rng.uniform(0, 0.6, (600, 3)), rng.uniform(0, 1, (600, 3)))
    masks, probs = more.predict(["mug"])
    assert masks.shape[1] == 20 and probs.shape[0] == 20
    with pytest.raises(ValueError, match="num_queries"):
        load_segmenter(
            PipelineSettings(**{**TINY, "checkpoint": str(path), "num_queries": -1}),
            torch.device("cpu"),
        )


def test_split_distance_and_a_random_clips_image_features(tmp_path):
    """query.split_distance, query.contrast_phrases and the test-time views reach the segmenter; a
    checkpoint whose CLIP was never trained (the demo weights) gets no dense image features, since
    they would carry no meaning."""
    from sole_ros.clip import ClipSpec, load_clip
    from sole_ros.model import SoleConfig, SoleModel
    from sole_ros.training.checkpointing import save_checkpoint
    from sole_ros.training.config import TrainConfig

    config = SoleConfig.tiny(dbscan_eps=0.05)
    path = save_checkpoint(
        tmp_path / "run.pt",
        SoleModel(config),
        config,
        TrainConfig(model_size="tiny", clip_model="sole-tiny", clip_pretrained=None),
        clip=load_clip(ClipSpec.tiny(), "cpu"),
    )
    own = {**TINY, "checkpoint": str(path), "allow_random_weights": False}
    assert load_segmenter(PipelineSettings(**own), torch.device("cpu"))[0].dbscan_eps == 0.05
    wider = PipelineSettings(**{**own, "split_distance": 0.3})
    assert load_segmenter(wider, torch.device("cpu"))[0].dbscan_eps == 0.3
    contrasting = PipelineSettings(
        **{**own, "contrast_phrases": split_phrase_list(" mug,a red bowl ,, ")}
    )
    assert load_segmenter(contrasting, torch.device("cpu"))[0].contrast_phrases == [
        "mug",
        "a red bowl",
    ]
    # model.test_time_views / model.scene_scale wrap the segmenter in the test-time augmentation
    viewed = PipelineSettings(
        **{**own, "split_distance": 0.3, "test_time_views": 3, "scene_scale": 0.65}
    )
    wrapped = load_segmenter(viewed, torch.device("cpu"))[0]
    assert isinstance(wrapped, MultiViewSegmenter) and len(wrapped.views) == 3
    assert (wrapped.scene_scale, wrapped.dbscan_eps, wrapped.transforms[0][1]) == (0.65, 0.3, 0.65)
    assert not isinstance(
        load_segmenter(PipelineSettings(**own), torch.device("cpu"))[0], MultiViewSegmenter
    )
    messages = []
    built = build_pipeline(PipelineSettings(**own), log=messages.append)
    assert built.dense_features is None and any("dense CLIP features off" in m for m in messages)
    # Random weights on purpose (tests, benchmarks) keep the feature path running.
    assert build_pipeline(PipelineSettings(**TINY), log=lambda *_: None).dense_features is not None


def _gate_encoding(p):
    """Hold the model's encoder at a gate: (started, release) events. The real encoder runs once
    released; this only makes a segmentation take as long as the test needs."""
    started, release = threading.Event(), threading.Event()
    model = p.segmenter.model
    real_encode = model.encode

    def gated(*args, **kwargs):
        started.set()
        assert release.wait(60)
        return real_encode(*args, **kwargs)

    model.encode = gated
    return started, release


def test_queries_answer_from_the_last_segmentation_while_a_new_one_runs(frames):
    """A query never waits for a segmentation in progress: it answers from the last finished one,
    consistently (the answer's segmentation is the one its masks index), and the next query after
    the swap answers from the new one."""
    p = build_pipeline(PipelineSettings(**TINY), log=lambda *_: None)
    p.ingest_rgbd(frames[0].depth, frames[0].K, frames[0].pose, color=frames[0].color, stamp=1.0)
    first = p.segment()
    for f in frames[1:]:
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=2.0 + f.stamp)
    assert p.needs_segmentation()
    started, release = _gate_encoding(p)
    worker = threading.Thread(target=p.segment, daemon=True)
    worker.start()
    try:
        assert started.wait(30)
        answer = p.query(["mug"], max_results=5)  # would deadlock here if it waited for the encoder
        assert answer.segmentation is first and p.segmentation is first
        assert all(i.point_indices.max() < len(first.snapshot) for i in answer.instances)
    finally:
        release.set()
        worker.join(120)
    assert not worker.is_alive()
    second = p.segmentation
    assert (
        second is not first
        and second.version == p.map.version
        and len(second.snapshot) > len(first.snapshot)
    )
    answer = p.query(["mug"], max_results=5)
    assert answer.segmentation is second


def test_a_segmentation_of_content_reset_meanwhile_is_discarded(frames):
    p = build_pipeline(PipelineSettings(**TINY), log=lambda *_: None)
    p.ingest_rgbd(frames[0].depth, frames[0].K, frames[0].pose, color=frames[0].color, stamp=1.0)
    started, release = _gate_encoding(p)
    errors = []

    def segment():
        try:
            p.segment()
        except QueryRejected as error:
            errors.append(str(error))

    worker = threading.Thread(target=segment, daemon=True)
    worker.start()
    assert started.wait(30)
    p.reset()  # does not wait for the encoder
    release.set()
    worker.join(120)
    assert errors and "reset or replaced while it was being segmented" in errors[0]
    assert p.segmentation is None
    with pytest.raises(QueryRejected, match="no scene yet"):
        p.query(["mug"], max_results=1)


def test_answers_carry_stable_object_ids_across_segmentations(frames):
    """With the object memory on (memory.enabled), every segmentation's parts get the memory's ids:
    segmenting the same map again gives every part the id it had, and a query's answers carry
    the id of the part they are; a reset starts a new memory whose ids never repeat old ones."""
    p = build_pipeline(PipelineSettings(**TINY, object_memory=True), log=lambda *_: None)
    assert p.memory is not None
    for f in frames:
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=1.0 + f.stamp)
    first = p.segment()
    assert first.objects and len({object_id for object_id, _ in first.objects}) == len(
        first.objects
    )
    answer = p.query(["mug"], max_results=3)
    assert len(answer.object_ids) == len(answer.instances) > 0 and all(
        i > 0 for i in answer.object_ids
    )
    by_points: dict[tuple, set] = {}  # the random model may give two parts the same points
    for object_id, inst in first.objects:
        by_points.setdefault(tuple(inst.point_indices), set()).add(object_id)
    for inst, object_id in zip(answer.instances, answer.object_ids):
        if tuple(inst.point_indices) in by_points:  # an answer that is a whole part has its id
            assert object_id in by_points[tuple(inst.point_indices)]
    again = p.segment(force=True)
    assert again is not first
    assert sorted((tuple(i.point_indices), o) for o, i in again.objects) == sorted(
        (tuple(i.point_indices), o) for o, i in first.objects
    )
    assert p.query(["mug"], max_results=3).object_ids == answer.object_ids
    highest = max(o for o, _ in first.objects)
    p.reset()
    assert len(p.memory) == 0
    p.ingest_rgbd(frames[0].depth, frames[0].K, frames[0].pose, color=frames[0].color, stamp=50.0)
    assert min(o for o, _ in p.segment().objects) > highest


def test_the_object_memory_travels_with_the_saved_map(frames, tmp_path):
    """A saved map carries the object memory: loaded into a fresh pipeline, the objects keep their
    ids, the next segmentation of the same map gives them back, and new ids continue after them.
    A file whose memory is damaged is refused whole; the running map and memory stay."""
    from map_file_support import rewrite_header

    p = build_pipeline(PipelineSettings(**TINY, object_memory=True), log=lambda *_: None)
    for f in frames:
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=1.0 + f.stamp)
    first = p.segment()
    path = tmp_path / "kitchen.map"
    p.save(path)

    fresh = build_pipeline(PipelineSettings(**TINY, object_memory=True), log=lambda *_: None)
    fresh.segmenter = p.segmenter  # the same random network, so the same parts
    fresh.load(path)
    assert sorted(o.id for o in fresh.memory.objects()) == sorted(o.id for o in p.memory.objects())
    again = fresh.segment()
    assert sorted(o for o, _ in again.objects) == sorted(o for o, _ in first.objects)

    damaged = tmp_path / "damaged.map"
    damaged.write_bytes(path.read_bytes())
    rewrite_header(damaged, lambda h: h["object_memory"].update(next_id=-5))
    version, remembered = fresh.map.version, len(fresh.memory)
    with pytest.raises(ValueError, match="next_id|memory"):
        fresh.load(damaged)
    assert fresh.map.version == version and len(fresh.memory) == remembered


def _voxels_inside(pipeline, low, high) -> int:
    coords = pipeline.map.export().coords
    return int(np.all((coords >= low) & (coords <= high), axis=1).sum())


def test_an_object_taken_away_is_cleared_and_retired_and_one_out_of_view_is_kept():
    """With the memory on, depth frames that see through where an object stood remove its voxels
    from the map and, after retire_votes such frames, the object from the memory; the others stay.
    Frames looking elsewhere retire nothing. The memory is seeded with the ground-truth objects
    (the tiny random model's parts are arbitrary); the clearing and retiring are the pipeline's."""
    import dataclasses

    from sole_ros.memory import Detection, keys_from_centres
    from sole_ros.synthetic import fuse_frames
    from sole_ros.synthetic.camera import look_at

    scene = generate_scene(seed=2, kind="tabletop", classes=["mug", "bowl", "bottle"])
    seen = list(render_sequence(scene, 6, width=160, height=120, seed=2, noise=None))
    p = build_pipeline(
        PipelineSettings(**{**TINY, "voxel_size": 0.02}, object_memory=True), log=lambda *_: None
    )
    for f in seen:
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=1.0 + f.stamp)
    cloud = fuse_frames(seen)
    objects = [
        o for o in scene.objects if np.count_nonzero(cloud.instance_ids == o.instance_id) > 50
    ]
    ids = p.memory.update(
        [
            Detection(
                keys_from_centres(cloud.points[cloud.instance_ids == o.instance_id], 0.02),
                label=o.class_name,
            )
            for o in objects
        ],
        stamp=2.0,
    )
    remembered = dict(zip(ids, objects))
    assert len(remembered) == len(objects) >= 3

    # frames pointing away from the table: nothing is seen through, nothing retired
    K = seen[0].K
    away = look_at(scene.focus + np.array([0.0, 0.0, 0.5]), scene.focus + np.array([0.0, 0.0, 3.0]))
    sky = np.zeros((120, 160), np.float32)  # nothing measured: says nothing about any voxel
    for i in range(5):
        p.ingest_rgbd(sky, K, away, stamp=3.0 + i)
    assert sorted(o.id for o in p.memory.objects()) == sorted(remembered)
    assert p.map.stats()["voxels_cleared_free"] == 0

    taken = max(
        (o for o in objects if o.class_name in ("mug", "bowl", "bottle")),
        key=lambda o: np.count_nonzero(cloud.instance_ids == o.instance_id),
    )
    low, high = taken.bounds()
    table_top = (
        low[2] + 0.05
    )  # within the tolerance (2.5 voxels) of the table's surface, voxels stay
    before = _voxels_inside(p, [low[0], low[1], table_top], high)
    assert before > 20
    gone = dataclasses.replace(scene, objects=[o for o in scene.objects if o is not taken])
    for f in render_sequence(
        gone, 6, width=160, height=120, seed=2, noise=None, poses=[f.pose for f in seen]
    ):
        p.ingest_rgbd(f.depth, f.K, f.pose, color=f.color, stamp=10.0 + f.stamp)
    after = _voxels_inside(p, [low[0], low[1], table_top], high)
    assert after < 0.2 * before, (
        f"{after} of {before} voxels of the taken {taken.class_name} remain"
    )
    left = {o.id for o in p.memory.objects()}
    taken_id = next(i for i, o in remembered.items() if o is taken)
    assert taken_id not in left and left == set(remembered) - {taken_id}
    assert p.memory.stats()["retired"] == 1
    assert p.map.stats()["voxels_cleared_free"] >= before - after


def test_a_still_camera_clears_free_space_twice_a_second_and_a_moving_one_as_it_moves():
    """Clearing what a frame sees through projects the whole map: a 30 Hz camera standing still
    clears with one frame per 0.5 s, a moving one once it moved 5 cm, a replay going back in time
    at once."""
    scene = generate_scene(seed=2, kind="tabletop", classes=["mug", "bowl"])
    frame = next(iter(render_sequence(scene, 1, width=96, height=72, seed=2)))
    p = build_pipeline(PipelineSettings(**TINY, object_memory=True), log=lambda *_: None)
    cleared = []
    real_clear = p.map.clear_seen_through

    def counting_clear(*args, **kwargs):  # a spy: counts the real clearing's runs
        cleared.append(1)
        return real_clear(*args, **kwargs)

    p.map.clear_seen_through = counting_clear
    for i in range(15):  # 0.47 s of a still camera at 30 Hz
        p.ingest_rgbd(frame.depth, frame.K, frame.pose, color=frame.color, stamp=10.0 + i / 30)
    assert len(cleared) == 1
    p.ingest_rgbd(frame.depth, frame.K, frame.pose, stamp=10.5)
    assert len(cleared) == 2
    moved = frame.pose.copy()
    moved[0, 3] += 0.06
    p.ingest_rgbd(frame.depth, frame.K, moved, stamp=10.52)
    assert len(cleared) == 3
    p.ingest_rgbd(frame.depth, frame.K, moved, stamp=1.0)  # the replay started over
    assert len(cleared) == 4
