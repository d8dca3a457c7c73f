"""The SOLE network: structure, shapes, training-mode outputs, pooling and the paper-size build."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sole_ros._minkowski import ME
from sole_ros.model import SoleConfig, SoleModel, voxelize
from sole_ros.model.fps import farthest_point_sample
from sole_ros.model.pooling import pooling_matrix
from sole_ros.model.positional import FourierPositionalEncoding

# One thread: these networks are small, and on a shared 2-core machine OpenMP threads that wait
# for each other made them ~20x slower.
torch.set_num_threads(1)


def _scene(cfg, n=2000, seed=0, extent=1.0):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, extent, (n, 3))
    return voxelize(pts, rng.uniform(0, 1, (n, 3)), rng.normal(size=(n, cfg.clip_dim)), cfg)


def _text(cfg, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(t, cfg.clip_dim, generator=g), dim=-1)


def test_voxelize_takes_read_only_arrays_without_warning_or_writing_them():
    # the scene map hands out read-only views of its arrays
    cfg = SoleConfig.tiny()
    rng = np.random.default_rng(0)
    arrays = [
        rng.uniform(0, 1, (500, 3)),
        rng.uniform(0, 1, (500, 3)).astype(np.float32),
        rng.normal(size=(500, cfg.clip_dim)).astype(np.float32),
    ]
    expected = voxelize(*arrays, cfg)
    for array in arrays:
        array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene = voxelize(*arrays, cfg)
    assert torch.equal(scene.features, expected.features) and torch.equal(scene.clip, expected.clip)
    assert torch.equal(scene.raw_coords, expected.raw_coords)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SoleModel(SoleConfig.tiny()).eval()


def test_forward_outputs(tiny):
    cfg = tiny.config
    scene = _scene(cfg)
    with torch.no_grad():
        out = tiny([scene], [_text(cfg, 3)])
    q = cfg.num_queries
    assert out["pred_masks"][0].shape == (scene.num_voxels, q)
    assert out["pred_embeds"].shape == (1, q, cfg.clip_dim)
    torch.testing.assert_close(out["pred_embeds"].norm(dim=-1), torch.ones(1, q))
    assert out["pred_logits"][0].shape == (q, 4)
    assert len(out["aux_outputs"]) == cfg.num_decoders * cfg.num_levels == 12
    assert all(a["pred_masks"][0].shape == (scene.num_voxels, q) for a in out["aux_outputs"])
    assert len(set(out["query_voxels"][0].tolist())) == q
    # logits: 100 x cosine with the text, 100 x dot product with the background embedding
    text = _text(cfg, 3)
    expected = torch.cat(
        [100 * out["pred_embeds"][0] @ text.t(), 100 * out["pred_embeds"][0] @ tiny.bg_feature.t()],
        1,
    )
    torch.testing.assert_close(out["pred_logits"][0], expected)


def test_encode_once_decode_many_equals_forward(tiny):
    cfg = tiny.config
    scene = _scene(cfg, seed=1)
    with torch.no_grad():
        encoding = tiny.encode([scene])
        for t in (1, 4):
            split = tiny.decode(encoding, [_text(cfg, t, seed=t)], return_aux=False)
            whole = tiny([scene], [_text(cfg, t, seed=t)])
            torch.testing.assert_close(split["pred_masks"][0], whole["pred_masks"][0])
            torch.testing.assert_close(split["pred_logits"][0], whole["pred_logits"][0])
            assert split["aux_outputs"] == []
    # the voxel keys projected once (kept with the scene) give what projecting them afresh gives
    assert set(encoding[0].projected) == {0, 1, 2, 3}
    with torch.enable_grad():  # no reuse while gradients are wanted
        fresh = tiny.decode(encoding, [_text(cfg, 4, seed=4)], return_aux=False)
    torch.testing.assert_close(fresh["pred_masks"][0].detach(), split["pred_masks"][0])


def test_text_keys_change_the_masks(tiny):
    """The CMD attends to the text: other phrases give other masks (cross-attention is live)."""
    cfg = tiny.config
    with torch.no_grad():
        enc = tiny.encode([_scene(cfg, seed=2)])
        a = tiny.decode(enc, [_text(cfg, 2, seed=1)], return_aux=False)["pred_masks"][0]
        b = tiny.decode(enc, [_text(cfg, 2, seed=2)], return_aux=False)["pred_masks"][0]
    assert not torch.allclose(a, b)


def test_training_mode_batch_with_varied_text_keys():
    torch.manual_seed(3)
    cfg = SoleConfig.tiny(sample_sizes=(20, 40, 60, 80, 100))
    model = SoleModel(cfg).train()
    scenes = [_scene(cfg, n=1500, seed=3), _scene(cfg, n=800, seed=4, extent=0.6)]
    out = model(scenes, [_text(cfg, 5), _text(cfg, 2)])
    assert [m.shape for m in out["pred_masks"]] == [(s.num_voxels, cfg.num_queries) for s in scenes]
    assert out["pred_logits"][0].shape == (cfg.num_queries, 6) and out["pred_logits"][1].shape == (
        cfg.num_queries,
        3,
    )
    loss = sum(m.sigmoid().mean() for m in out["pred_masks"]) + out["pred_embeds"].sum()
    loss = loss + sum(a["pred_masks"][0].mean() for a in out["aux_outputs"])
    loss.backward()
    assert model.cross_attention[0][0].multihead_attn.in_proj_weight.grad is not None
    assert model.lin_squeeze[0][3].weight.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen, as in SOLE
    assert not model.backbone.training


def test_unfrozen_backbone_gets_gradients():
    torch.manual_seed(4)
    cfg = SoleConfig.tiny(freeze_backbone=False)
    model = SoleModel(cfg).train()
    out = model([_scene(cfg, n=600, seed=5)], [_text(cfg, 1)])
    out["pred_masks"][0].mean().backward()
    assert model.backbone.conv0p1s1.kernel.grad is not None


def test_pooling_matrix_equals_repeated_minkowski_average_pooling():
    rng = np.random.default_rng(1)
    coords = np.unique(rng.integers(-30, 30, (3000, 3)), axis=0)
    feats = torch.randn(len(coords), 4)
    x = ME.SparseTensor(
        features=feats,
        coordinates=torch.cat(
            [torch.zeros(len(coords), 1, dtype=torch.int32), torch.from_numpy(coords).int()], 1
        ),
    )
    pool = ME.MinkowskiAvgPooling(kernel_size=2, stride=2, dimension=3)
    y = x
    for stride in (2, 4, 8, 16):
        y = pool(y)
        matrix = pooling_matrix(coords, y.C[:, 1:].numpy(), stride)
        torch.testing.assert_close(torch.sparse.mm(matrix, feats), y.F, rtol=1e-5, atol=1e-6)


def test_farthest_point_sampling_is_greedy_farthest():
    g = torch.Generator().manual_seed(0)
    xyz = torch.rand(200, 3, generator=g)
    idx = farthest_point_sample(xyz, 10).tolist()
    assert idx[0] == 0
    for i in range(1, 10):
        d = torch.cdist(xyz, xyz[idx[:i]]).min(dim=1).values
        assert idx[i] == int(torch.argmax(d))
    few = farthest_point_sample(xyz[:3], 5).tolist()  # more queries than points: all, then repeats
    assert len(few) == 5 and set(few[:3]) == {0, 1, 2}


def test_fourier_encoding_hand_values():
    enc = FourierPositionalEncoding(4)
    enc.gauss_B.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.0, 0.0]]))
    xyz = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.5, 1.0, 3.0]])
    out = enc(xyz, xyz.min(0).values, xyz.max(0).values)
    # normalised coords: (0,0,0), (1,1,1), (0.5,0.5,1) -> projections 2*pi*(x, y/2)
    expected = torch.tensor(
        [
            [0.0, 0.0, 1.0, 1.0],
            [math.sin(2 * math.pi), math.sin(math.pi), 1.0, -1.0],
            [math.sin(math.pi), math.sin(math.pi / 2), -1.0, math.cos(math.pi / 2)],
        ]
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_published_key_layout_of_the_paper_size_network():
    model = SoleModel(SoleConfig(), build_backbone=True)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["backbone.conv0p1s1.kernel"] == (125, 3, 32)
    assert shapes["backbone.bn0.bn.running_var"] == (32,)
    assert shapes["backbone.block1.0.conv1.kernel"] == (27, 32, 32)
    assert shapes["backbone.block2.0.downsample.0.kernel"] == (32, 64)
    assert shapes["backbone.block5.0.conv1.kernel"] == (27, 384, 256)
    assert shapes["backbone.convtr4p16s2.kernel"] == (8, 256, 256)
    assert shapes["backbone.bntr7.bn.weight"] == (96,)
    assert shapes["mask_features_head.kernel"] == (864, 128) and shapes[
        "mask_features_head.bias"
    ] == (1, 128)
    assert shapes["clip_proj.weight"] == (128, 864) and shapes["semantic_proj.weight"] == (128, 768)
    assert shapes["query_projection.layers.0.weight"] == (128, 128, 1)
    assert shapes["query_projection.layers.2.weight"] == (128, 128, 1)
    assert shapes["mask_embed_head.2.weight"] == (128, 128) and shapes[
        "class_embed_head.weight"
    ] == (768, 128)
    assert shapes["bg_feature"] == (1, 768) and shapes["pos_enc.gauss_B"] == (3, 64)
    assert [shapes[f"lin_squeeze.0.{i}.weight"][1] for i in range(4)] == [1024, 1024, 896, 864]
    assert shapes["cross_attention.0.3.multihead_attn.in_proj_weight"] == (384, 128)
    assert shapes["cross_semantic_attention.0.0.multihead_attn.out_proj.weight"] == (128, 128)
    assert shapes["self_attention.0.2.self_attn.in_proj_bias"] == (384,)
    assert shapes["ffn_attention.0.1.linear1.weight"] == (1024, 128)
    assert [len(model.backbone.get_submodule(f"block{i}")) for i in range(1, 9)] == [
        2,
        3,
        4,
        6,
        2,
        2,
        2,
        2,
    ]


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return SoleModel(SoleConfig()).eval()


@pytest.mark.slow
def test_paper_size_network_runs_a_forward_pass_on_the_cpu(paper_model):
    cfg = paper_model.config
    rng = np.random.default_rng(0)
    n = 6000
    pts = np.c_[rng.uniform(0, 2, (n, 2)), rng.uniform(0, 0.3, n)]  # 2 m x 2 m slab, 2 cm voxels
    scene = voxelize(pts, rng.uniform(0, 1, (n, 3)), rng.normal(size=(n, 768)), cfg)
    with torch.no_grad():
        out = paper_model([scene], [F.normalize(torch.randn(2, 768), dim=-1)])
    assert out["pred_masks"][0].shape == (scene.num_voxels, 150)
    assert out["pred_embeds"].shape == (1, 150, 768)
    assert (
        torch.isfinite(out["pred_masks"][0]).all() and torch.isfinite(out["pred_logits"][0]).all()
    )


@pytest.mark.slow
def test_paper_size_published_layout_checkpoint_loads_every_key(tmp_path, paper_model):
    from omegaconf import OmegaConf

    from sole_ros.model.checkpoint import config_from_checkpoint, load_sole_model, read_checkpoint

    sd = {"model." + k: v for k, v in paper_model.state_dict().items()}
    sd["model.backbone.final.kernel"] = torch.zeros(96, 20)
    sd["model.backbone.final.bias"] = torch.zeros(1, 20)
    sd["criterion.empty_weight"] = torch.ones(201)
    hp = OmegaConf.create(
        {
            "data": {"voxel_size": 0.02},
            "general": {"topk_per_image": 750, "dbscan_eps": 0.95},
            "model": {
                "num_queries": 150,
                "num_heads": 8,
                "num_decoders": 3,
                "hlevels": [0, 1, 2, 3],
                "gauss_scale": 1.0,
                "sample_sizes": [200, 800, 3200, 12800, 51200],
            },
        }
    )
    path = tmp_path / "scannet200.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": hp, "epoch": 600}, path)
    assert config_from_checkpoint(read_checkpoint(path)) == SoleConfig(input_mode="reference")
    model, report = load_sole_model(path)
    assert report.ok and len(report.loaded) == len(sd) - 3 and len(report.ignored) == 3
    torch.testing.assert_close(model.pos_enc.gauss_B, paper_model.pos_enc.gauss_B, rtol=0, atol=0)
