"""Dense CLIP features (tiny random open_clip ViT) and their fusion into the voxel map.

The CLIP weights are random (no pretrained weights exist offline); the code paths are open_clip's
real ones. What is checked is geometry and arithmetic, not semantics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scene_support import box_scene_depth, translation

from sole_ros.clip import ClipSpec, load_clip
from sole_ros.scene import DenseClipFeatures, InvalidInput, KeyframeSelector, VoxelMap
from sole_ros.scene.voxel_map import sample_feature_grid


@pytest.fixture(scope="module")
def clip():
    return load_clip(ClipSpec.tiny(), "cpu")


@pytest.fixture(scope="module")
def dense(clip):
    return DenseClipFeatures(clip)


def test_dense_features_equal_the_vit_with_identity_attention_in_its_last_block(clip, dense):
    """At the model's native input size, our value-path shortcut must equal open_clip's own
    blocks run with a mask that lets every token attend only to itself in the last block."""
    visual = clip.model.visual
    image = np.random.default_rng(0).integers(0, 256, (*clip.image_size, 3), dtype=np.uint8)
    ours = dense.frame_features(image)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    pixels = (pixels - torch.tensor(clip.image_mean).view(1, 3, 1, 1)) / torch.tensor(
        clip.image_std
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        tokens = visual._embeds(pixels)
        blocks = visual.transformer.resblocks
        for block in blocks[:-1]:
            tokens = block(tokens)
        length = tokens.shape[1]
        only_self = torch.full((length, length), float("-inf"))
        only_self.fill_diagonal_(0.0)
        tokens = blocks[-1](tokens, attn_mask=only_self)
        reference = F.normalize(visual.ln_post(tokens[:, 1:]) @ visual.proj, dim=-1)
    grid = dense.grid_size(*clip.image_size)
    assert ours.shape == (*grid, clip.embed_dim)
    assert torch.allclose(ours.reshape(-1, clip.embed_dim), reference[0], atol=1e-5)


def test_dense_features_keep_aspect_and_batch(dense):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 120, 200, 3), dtype=np.uint8)
    batch = dense.batch_features(frames)
    h, w = dense.grid_size(120, 200)
    assert batch.shape == (3, h, w, dense.feature_dim) and w > h
    assert torch.allclose(batch.norm(dim=-1), torch.ones(3, h, w), atol=1e-5)
    assert torch.allclose(batch[1], dense.frame_features(frames[1]), atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])
    with pytest.raises(InvalidInput, match="uint8 RGB"):
        dense.frame_features(frames[0].astype(np.float32))


def test_occluded_voxels_get_no_feature_and_views_are_averaged(dense):
    rng = np.random.default_rng(2)
    voxel_map = VoxelMap(voxel_size=0.02, feature_dim=dense.feature_dim)
    # Camera B, 0.8 m to the side, sees the wall behind the occluder; it brings no features.
    depth_b, K = box_scene_depth(camera_x=0.8)
    voxel_map.integrate_rgbd(depth_b, K, translation(0.8), stamp=0.0)
    # Camera A, on the axis, sees the occluder in front of that part of the wall.
    depth_a, K = box_scene_depth(camera_x=0.0)
    image = rng.integers(0, 256, depth_a.shape + (3,), dtype=np.uint8)
    features_1 = dense.frame_features(image)
    summary = voxel_map.integrate_rgbd(depth_a, K, np.eye(4), image, stamp=1.0, features=features_1)
    snap = voxel_map.export()
    x, y, z = snap.coords.T
    wall = np.abs(z - 2.0) < 0.02
    hidden = wall & (np.abs(x) < 0.15) & (np.abs(y) < 0.15)  # behind the occluder as seen from A
    visible_wall = (
        wall & (x > 0.5) & (x < 0.9) & (np.abs(y) < 0.3)
    )  # the occluder shadows |x| < 0.4
    occluder = np.abs(z - 1.0) < 0.02
    assert hidden.sum() > 100 and visible_wall.sum() > 100 and occluder.sum() > 100
    assert not snap.has_feature[hidden].any()
    assert snap.has_feature[visible_wall].mean() > 0.95 and snap.has_feature[occluder].mean() > 0.95
    assert summary.voxels_featured == int(snap.has_feature.sum())
    # A second view with other features: stored features become the normalised mean of both.
    features_2 = dense.frame_features(image[::-1].copy())
    voxel_map.integrate_rgbd(depth_a, K, np.eye(4), image, stamp=2.0, features=features_2)
    again = voxel_map.export()
    assert not again.has_feature[hidden].any()
    probe = np.flatnonzero(occluder & again.has_feature)[:50]
    camera = again.coords[probe].astype(np.float64)
    u = K[0, 0] * camera[:, 0] / camera[:, 2] + K[0, 2]
    v = K[1, 1] * camera[:, 1] / camera[:, 2] + K[1, 2]
    first = grid_sample_reference(features_1, u, v, depth_a.shape[1], depth_a.shape[0])
    second = grid_sample_reference(features_2, u, v, depth_a.shape[1], depth_a.shape[0])
    expected = (first + second) / 2
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(again.features[probe], expected, atol=3e-3)  # float16 storage


def grid_sample_reference(features, u, v, width, height):
    """torch's grid_sample: the grid's cells tile the image (align_corners=False), border clamp."""
    grid = torch.from_numpy(
        np.stack([(u + 0.5) * 2 / width - 1, (v + 0.5) * 2 / height - 1], -1)
    ).float()
    sampled = F.grid_sample(
        features.permute(2, 0, 1)[None].float(),
        grid.view(1, 1, -1, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    return sampled[0, :, 0].T.numpy()


def test_feature_sampling_matches_grid_sample_including_borders():
    rng = np.random.default_rng(3)
    features = torch.from_numpy(rng.normal(size=(5, 7, 6)).astype(np.float32))
    u = np.concatenate([rng.uniform(-3, 643, 500), [0, 639, -0.5, 639.5]]).astype(np.float32)
    v = np.concatenate([rng.uniform(-3, 483, 500), [0, 479, 479.5, -0.5]]).astype(np.float32)
    ours = sample_feature_grid(features, u, v, 640, 480).numpy()
    assert np.allclose(ours, grid_sample_reference(features, u, v, 640, 480), atol=1e-5)
    one_cell = torch.ones(1, 1, 3)
    assert np.allclose(sample_feature_grid(one_cell, u[:5], v[:5], 640, 480).numpy(), 1.0)


def test_keyframe_selector_thresholds():
    selector = KeyframeSelector(
        min_translation=0.1, min_rotation_deg=10, min_interval=0.5, max_interval=5.0
    )
    assert selector.accept(np.eye(4), 0.0)  # first frame
    assert not selector.accept(translation(0.05), 1.0)  # moved too little
    assert not selector.accept(translation(0.5), 0.2)  # too soon
    assert selector.accept(translation(0.2), 1.0)  # moved enough
    turned = translation(0.2)
    angle = np.radians(12)
    turned[:3, :3] = [
        [np.cos(angle), 0, np.sin(angle)],
        [0, 1, 0],
        [-np.sin(angle), 0, np.cos(angle)],
    ]
    assert selector.accept(turned, 2.0)  # turned enough
    assert not selector.accept(turned, 3.0)
    assert selector.accept(turned, 7.5)  # refreshed after max_interval
    assert selector.accept(turned, 1.0)  # time went backwards: new sequence
    with pytest.raises(InvalidInput):
        selector.accept(np.diag([2.0, 1, 1, 1]), 9.0)


def test_strided_ingest_samples_features_at_the_same_image_positions(dense):
    depth, K = box_scene_depth(camera_x=0.3)
    image = np.random.default_rng(4).integers(0, 256, depth.shape + (3,), dtype=np.uint8)
    features = dense.frame_features(image)
    maps = []
    for stride in (1, 2):
        voxel_map = VoxelMap(voxel_size=0.05, feature_dim=dense.feature_dim)
        voxel_map.integrate_rgbd(depth, K, np.eye(4), image, features=features, pixel_stride=stride)
        maps.append(voxel_map.export())
    full, strided = maps
    # Stride 2 skips the last pixel column, so a few border voxels are missing; compare the rest.
    common = np.isin(full.coords.view("V12").ravel(), strided.coords.view("V12").ravel())
    assert common.mean() > 0.95 and len(strided) == common.sum()
    a_features, a_has = full.features[common], full.has_feature[common]
    both = a_has & strided.has_feature
    assert both.mean() > 0.9
    assert np.allclose(a_features[both], strided.features[both], atol=2e-3)
