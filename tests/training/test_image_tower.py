"""Training a random small CLIP's image tower on rendered synthetic frames (sole-ros
train-image-tower), and the node using the trained tower's dense features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sole_ros.clip import ClipSpec, load_clip
from sole_ros.model.text import TextEncoder
from sole_ros.scene.dense_clip import DenseClipFeatures
from sole_ros.scene.voxel_map import sample_feature_grid
from sole_ros.synthetic import CLASS_NAMES
from sole_ros.training.components import CLASS_PROMPT
from sole_ros.training.image_tower import (
    FLOOR_HEIGHT,
    ImageTowerConfig,
    attach_image_tower,
    evaluate_image_tower,
    region_means,
    render_labelled_images,
    sample_at_pixels,
    train_image_tower,
    vocabulary,
    vocabulary_embeddings,
)

SMALL = ImageTowerConfig(
    scenes=2,
    frames_per_scene=2,
    eval_seeds=(300, 301),
    eval_frames_per_scene=1,
    image_size=(128, 96),
    short_side=96,
    epochs=30,
    batch_size=2,
    lr=3e-3,
    pixels_per_image=512,
    channel_shuffle=0.0,
    grey=0.0,
    seed=3,
)  # colours kept


def _clip_and_vocabulary():
    torch.manual_seed(0)
    clip = load_clip(ClipSpec.tiny(), "cpu")
    return clip, vocabulary_embeddings(clip)


def test_frames_are_labelled_with_their_class_floor_and_wall():
    images = render_labelled_images([0, 1], 1, (128, 96))  # a tabletop and a room
    assert images.colors.shape == (2, 96, 128, 3) and images.targets.shape == (2, 96, 128)
    floor, wall = vocabulary().index("floor"), vocabulary().index("wall")
    tabletop, room = set(np.unique(images.targets[0])), set(np.unique(images.targets[1]))
    assert CLASS_NAMES.index("table") in tabletop and floor in tabletop and wall not in tabletop
    assert wall in room and floor in room
    # every object class seen in the room's frame is one of the nine; background split by height
    assert (
        room - {-1, floor, wall} <= set(range(len(CLASS_NAMES)))
        and len(room - {-1, floor, wall}) >= 2
    )
    assert FLOOR_HEIGHT == 0.02


def test_pixel_sampling_matches_the_maps_sampler():
    grid = torch.randn(6, 8, 5)
    width, height = 64, 48
    pixels = torch.tensor([0, 1, 70, 1000, width * height - 1, 37 * width + 5])
    ours = sample_at_pixels(grid, pixels, (width, height))
    u, v = (pixels % width).numpy(), (pixels // width).numpy()
    theirs = torch.nn.functional.normalize(sample_feature_grid(grid, u, v, width, height), dim=-1)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    clip, embeddings = _clip_and_vocabulary()
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    figures = train_image_tower(clip, embeddings, SMALL, log=lambda *_: None)
    return clip, embeddings, before, figures


def test_training_changes_only_the_image_tower_and_fits_its_frames(trained):
    clip, embeddings, before, figures = trained
    after = clip.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.") for k in changed)
    assert "visual.conv1.weight" in changed and "visual.proj" in changed
    assert not any(p.requires_grad for p in clip.model.parameters()) and not clip.model.training
    assert set(figures) >= {"pixel_accuracy", "mean_class_accuracy", "region_accuracy", "per_class"}
    # On its own training frames the tower now names most pixels; the random tower did not.
    frames = render_labelled_images([0, 1], 2, SMALL.image_size)
    dense = DenseClipFeatures(clip, short_side=SMALL.short_side, mixed_precision=False)
    fitted = evaluate_image_tower(dense, embeddings, frames)
    random_clip, _ = _clip_and_vocabulary()
    chance = evaluate_image_tower(
        DenseClipFeatures(random_clip, short_side=SMALL.short_side), embeddings, frames
    )
    assert fitted["pixel_accuracy"] > 0.5 > chance["pixel_accuracy"] + 0.2


def test_training_is_repeatable_bit_for_bit(trained):
    clip, embeddings, _, figures = trained
    again, _ = _clip_and_vocabulary()
    assert train_image_tower(again, embeddings, SMALL, log=lambda *_: None) == figures
    for name, value in clip.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], value), name


def test_the_node_fuses_a_trained_towers_features_at_its_short_side(tmp_path, trained):
    from sole_ros.model import SoleConfig, SoleModel
    from sole_ros.model.checkpoint import read_checkpoint
    from sole_ros.pipeline import PipelineSettings, build_pipeline
    from sole_ros.training.checkpointing import save_checkpoint
    from sole_ros.training.config import TrainConfig

    clip, _, _, figures = trained
    config = SoleConfig.tiny()
    run = save_checkpoint(
        tmp_path / "run.pt",
        SoleModel(config),
        config,
        TrainConfig(model_size="tiny", clip_model="sole-tiny", clip_pretrained=None),
        clip=clip,
    )
    settings = dict(
        device="cpu", voxel_size=0.03, keyframe_translation=0.0, keyframe_rotation_deg=0.0
    )
    messages = []
    untrained = build_pipeline(
        PipelineSettings(checkpoint=str(run), **settings), log=messages.append
    )
    assert untrained.dense_features is None and any(
        "dense CLIP features off" in m for m in messages
    )

    path = attach_image_tower(
        read_checkpoint(run), clip, SMALL, figures, tmp_path / "with_tower.pt"
    )
    stored = read_checkpoint(path)["hyper_parameters"]["clip"]["image_tower"]
    assert stored["short_side"] == SMALL.short_side and stored["held_out"] == figures
    assert stored["settings"] == dataclasses.asdict(SMALL) | {
        "image_size": [128, 96],
        "zoom": [0.7, 1.0],
        "eval_seeds": [300, 301],
    }
    assert "continued_from" not in stored  # a new tower: the run's CLIP had none trained
    # the same tower trained further keeps the record of its earlier training
    further = attach_image_tower(
        read_checkpoint(path),
        clip,
        dataclasses.replace(SMALL, epochs=1),
        figures,
        tmp_path / "further.pt",
    )
    record = read_checkpoint(further)["hyper_parameters"]["clip"]["image_tower"]
    assert record["settings"]["epochs"] == 1 and record["continued_from"] == stored
    messages.clear()
    pipeline = build_pipeline(
        PipelineSettings(checkpoint=str(path), **settings), log=messages.append
    )
    assert (
        pipeline.dense_features is not None
        and pipeline.dense_features.short_side == SMALL.short_side
    )
    assert any(
        "dense CLIP features on" in m
        and "train-image-tower" in m
        and f"{SMALL.short_side} px" in m
        and "synthetic renderings only" in m
        for m in messages
    )  # real-camera users are warned
    frames = render_labelled_images([0], 1, (128, 96))
    expected = DenseClipFeatures(clip, short_side=SMALL.short_side).frame_features(frames.colors[0])
    assert torch.allclose(
        pipeline.dense_features.frame_features(frames.colors[0]), expected, atol=1e-5
    )


def test_cli_refuses_a_checkpoint_without_clip_weights(tmp_path, capsys):
    from sole_ros.cli import main

    torch.save({"state_dict": {}, "hyper_parameters": {}}, tmp_path / "published.ckpt")
    assert (
        main(
            [
                "train-image-tower",
                str(tmp_path / "published.ckpt"),
                "--output",
                str(tmp_path / "x.ckpt"),
            ]
        )
        == 2
    )
    assert (
        "carries no CLIP weights" in capsys.readouterr().err and not (tmp_path / "x.ckpt").exists()
    )
    assert (
        main(
            [
                "train-image-tower",
                str(tmp_path / "missing.ckpt"),
                "--output",
                str(tmp_path / "x.ckpt"),
            ]
        )
        == 2
    )
    assert "cannot read" in capsys.readouterr().err
    assert (
        main(
            [
                "train-image-tower",
                str(tmp_path / "published.ckpt"),
                "--output",
                str(tmp_path / "x.ckpt"),
                "--grey",
                "1.5",
            ]
        )
        == 2
    )
    assert "--grey must be between 0 and 1" in capsys.readouterr().err
    assert (
        main(
            [
                "train-image-tower",
                str(tmp_path / "published.ckpt"),
                "--output",
                str(tmp_path / "x.ckpt"),
                "--region-weight",
                "-1",
            ]
        )
        == 2
    )
    assert "--region-weight must not be negative" in capsys.readouterr().err


def test_cli_renders_the_object_sizes_the_checkpoints_run_trained_on(tmp_path):
    """A network trained on "household" scenes gets a tower trained on household scenes too."""
    from sole_ros.cli import main
    from sole_ros.model import SoleConfig, SoleModel
    from sole_ros.model.checkpoint import read_checkpoint
    from sole_ros.training.checkpointing import save_checkpoint
    from sole_ros.training.config import TrainConfig

    torch.manual_seed(0)
    config = SoleConfig.tiny()
    train = TrainConfig.from_dict(
        {
            "model_size": "tiny",
            "clip_model": "sole-tiny",
            "clip_pretrained": None,
            "data": {"synthetic_object_sizes": "household"},
        }
    )
    run = save_checkpoint(
        tmp_path / "run.pt",
        SoleModel(config),
        config,
        train,
        clip=load_clip(ClipSpec.tiny(), "cpu"),
    )
    assert (
        main(
            [
                "train-image-tower",
                str(run),
                "--output",
                str(tmp_path / "tower.pt"),
                "--scenes",
                "1",
                "--frames-per-scene",
                "1",
                "--batch-size",
                "1",
                "--epochs",
                "1",
                "--short-side",
                "64",
            ]
        )
        == 0
    )
    tower = read_checkpoint(tmp_path / "tower.pt")["hyper_parameters"]["clip"]["image_tower"]
    assert tower["settings"]["object_sizes"] == "household"


def test_region_means_pool_each_frames_class_apart():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([4, 4, 1, 4, 1])
    frame_of = torch.tensor([0, 0, 0, 1, 1])
    means, classes = region_means(features, labels, frame_of, classes=11)
    # regions in (frame, class) order: (0, 1), (0, 4), (1, 1), (1, 4)
    assert classes.tolist() == [1, 4, 1, 4]
    s = 2**-0.5
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [s, s], [s, s], [0.0, 1.0]]))


def test_the_region_loss_trains_the_tower_differently():
    config = dataclasses.replace(SMALL, epochs=2)
    towers = []
    for weight in (0.0, 0.0, 1.0):
        clip, embeddings = _clip_and_vocabulary()
        train_image_tower(
            clip, embeddings, dataclasses.replace(config, region_weight=weight), log=lambda *_: None
        )
        towers.append(clip.model.state_dict()["visual.proj"])
    # the same run twice gives the same tower, so the third differs by its region loss alone
    assert torch.equal(towers[0], towers[1]) and not torch.equal(towers[0], towers[2])


def test_training_scenes_may_not_include_the_held_out_ones():
    clip, embeddings = _clip_and_vocabulary()
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    with pytest.raises(ValueError, match="include the held-out scenes 300-300"):
        train_image_tower(
            clip, embeddings, dataclasses.replace(SMALL, first_seed=299), log=lambda *_: None
        )
    assert all(torch.equal(v, clip.model.state_dict()[k]) for k, v in before.items())


def test_a_larger_image_tower_keeps_the_checkpoints_text_space():
    from sole_ros.clip import TINY_DENSE_MODEL_NAME
    from sole_ros.training.image_tower import clip_with_text_tower_of

    clip, embeddings = _clip_and_vocabulary()
    data = {
        "hyper_parameters": {"clip": {"model_name": "sole-tiny", "pretrained": None}},
        "clip_state_dict": clip.model.state_dict(),
    }
    dense = clip_with_text_tower_of(data, TINY_DENSE_MODEL_NAME, "cpu", seed=1)
    assert (
        dense.spec.model_name == TINY_DENSE_MODEL_NAME
        and dense.model.visual.transformer.width == 128
    )
    text = TextEncoder(device="cpu", prompt=CLASS_PROMPT, loaded=dense)
    assert torch.equal(torch.cat([text.encode([p]) for p in vocabulary()]), embeddings)
    again = clip_with_text_tower_of(data, TINY_DENSE_MODEL_NAME, "cpu", seed=1)
    assert all(
        torch.equal(v, again.model.state_dict()[k]) for k, v in dense.model.state_dict().items()
    )
    same = clip_with_text_tower_of(data, "sole-tiny", "cpu")
    assert all(
        torch.equal(v, same.model.state_dict()[k]) for k, v in clip.model.state_dict().items()
    )
    with pytest.raises(ValueError, match="does not share the text tower"):
        clip_with_text_tower_of(data, "ViT-B-32", "cpu")
    with pytest.raises(ValueError, match="unknown CLIP architecture"):
        clip_with_text_tower_of(data, "no-such-clip", "cpu")


def test_augmentation_permutes_or_greys_colours_and_keeps_labels_aligned():
    from sole_ros.training.image_tower import _augment

    rng = np.random.default_rng(0)
    colors = np.zeros((1, 8, 8, 3), np.uint8)
    colors[0, :, :4] = (200, 100, 0)  # left half one colour, right half black
    targets = np.zeros((1, 8, 8), np.int16)
    targets[0, :, 4:] = 1
    whole = dict(zoom=(1.0, 1.0))
    shuffled, grey, plain = set(), 0, 0
    for _ in range(40):
        out, labels = _augment(
            colors, targets, dataclasses.replace(SMALL, channel_shuffle=1.0, grey=0.0, **whole), rng
        )
        # mirrored or not, the coloured pixels are still the ones labelled 0
        coloured = out[0].sum(axis=-1) > 0
        assert np.array_equal(coloured, (labels[0] == 0).numpy())
        pixel = out[0][coloured][0].astype(float)
        shuffled.add(tuple(np.argsort(-pixel)))
        greyed, _ = _augment(
            colors, targets, dataclasses.replace(SMALL, channel_shuffle=0.0, grey=1.0, **whole), rng
        )
        grey += bool(np.ptp(greyed[0].astype(int), axis=-1).max() <= 1)
        kept, _ = _augment(
            colors, targets, dataclasses.replace(SMALL, channel_shuffle=0.0, grey=0.0, **whole), rng
        )
        plain += tuple(np.argsort(-kept[0][kept[0].sum(axis=-1) > 0][0].astype(float))) == (0, 1, 2)
    assert len(shuffled) >= 4 and grey == 40 and plain == 40
