"""Loading checkpoints written in the published SOLE/Mask3D layout; refusing unsafe files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf  # noqa: E402

from sole_ros.model import SoleConfig, SoleModel  # noqa: E402
from sole_ros.model.checkpoint import (  # noqa: E402
    CheckpointError,
    UnsafeCheckpointError,
    config_from_checkpoint,
    load_backbone_weights,
    load_sole_model,
    load_sole_weights,
    read_checkpoint,
)

# One thread: these networks are small, and on a shared 2-core machine OpenMP threads that wait
# for each other made them ~20x slower.
torch.set_num_threads(1)


def _hyper_parameters(cfg: SoleConfig):
    """An OmegaConf config shaped like SOLE's hydra config (with interpolations, as saved)."""
    return OmegaConf.create(
        {
            "general": {"dbscan_eps": 0.95, "topk_per_image": 750, "num_targets": 201},
            "data": {"voxel_size": cfg.voxel_size, "in_channels": 3},
            "model": {
                "_target_": "models.SOLE",
                "hidden_dim": cfg.hidden_dim,
                "num_queries": cfg.num_queries,
                "num_heads": cfg.num_heads,
                "num_decoders": cfg.num_decoders,
                "hlevels": list(cfg.hlevels),
                "clip_dim": cfg.clip_dim,
                "gauss_scale": 1.0,
                "sample_sizes": list(cfg.sample_sizes),
                "voxel_size": "${data.voxel_size}",
                "num_classes": "${general.num_targets}",
                "config": {
                    "backbone": {
                        "_target_": "models.Res16UNet34C",
                        "in_channels": "${data.in_channels}",
                        "config": {"conv1_kernel_size": cfg.conv1_kernel_size, "bn_momentum": 0.02},
                    }
                },
            },
        }
    )


def _lightning_file(path, model: SoleModel, extra: dict | None = None, backbone_only: bool = False):
    """Write a .ckpt like the published ones: model.-prefixed keys, criterion, optimiser state."""
    sd = {}
    for key, value in model.state_dict().items():
        if backbone_only and not key.startswith("backbone."):
            continue
        sd["model." + key] = value.clone()
    final_in = model.config.planes[7]
    sd["model.backbone.final.kernel"] = torch.randn(final_in, 20)  # unused `final` layer
    sd["model.backbone.final.bias"] = torch.randn(1, 20)
    if not backbone_only:
        sd["criterion.empty_weight"] = torch.ones(2)
    params = [p for p in model.parameters()][:2]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    data = {
        "epoch": 599,
        "global_step": 120000,
        "pytorch-lightning_version": "1.7.2",
        "state_dict": sd,
        "hyper_parameters": _hyper_parameters(model.config),
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [{"last_epoch": 3, "base_lrs": [1e-4]}],
        "callbacks": {},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 599}}}},
    }
    data.update(extra or {})
    torch.save(data, path)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return SoleModel(SoleConfig.tiny())


def test_full_checkpoint_loads_every_key(tmp_path, tiny_model):
    path = tmp_path / "scannet200.ckpt"
    _lightning_file(path, tiny_model)
    torch.manual_seed(1)
    fresh = SoleModel(SoleConfig.tiny())
    assert not torch.equal(fresh.pos_enc.gauss_B, tiny_model.pos_enc.gauss_B)
    report = load_sole_weights(fresh, path)
    assert report.ok, report.describe()
    assert set(report.loaded) == set(fresh.state_dict())
    assert sorted(report.ignored) == [
        "criterion.empty_weight",
        "model.backbone.final.bias",
        "model.backbone.final.kernel",
    ]
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # the Fourier matrix is taken from the file, not drawn anew
    assert torch.equal(fresh.pos_enc.gauss_B, tiny_model.pos_enc.gauss_B)


def test_mismatched_and_missing_keys_are_reported(tmp_path, tiny_model):
    path = tmp_path / "bad.ckpt"
    sd_model = SoleModel(SoleConfig.tiny(dim_feedforward=48))  # other FFN width
    _lightning_file(path, sd_model, extra={})
    data = torch.load(path, weights_only=False)
    del data["state_dict"]["model.bg_feature"]
    data["state_dict"]["model.surprise.weight"] = torch.zeros(3)
    torch.save(data, path)
    with pytest.raises(CheckpointError) as err:
        load_sole_weights(SoleModel(SoleConfig.tiny()), path)
    text = str(err.value)
    assert "missing from the file (1)" in text and "bg_feature" in text
    assert (
        "unexpected in the file (1)" in text and "model.surprise.weight" not in text
    )  # prefix stripped
    assert "surprise.weight" in text
    assert "ffn_attention.0.0.linear1.weight: (48, 32) vs (64, 32)" in text
    report = load_sole_weights(SoleModel(SoleConfig.tiny()), path, strict=False)
    assert not report.ok and len(report.mismatched) == 4 * 3  # 4 layers x (linear1 w/b, linear2 w)


def test_backbone_only_file_loads_and_freezes(tmp_path, tiny_model):
    path = tmp_path / "backbone_scannet200.ckpt"
    _lightning_file(path, tiny_model, backbone_only=True)
    torch.manual_seed(5)
    fresh = SoleModel(
        SoleConfig.tiny(),
    ).train()
    fresh.set_backbone_frozen(False)
    report = load_backbone_weights(fresh, path, freeze=True)
    assert report.ok, report.describe()
    assert all(k.startswith("backbone.") for k in report.loaded)
    assert len(report.loaded) == len([k for k in fresh.state_dict() if k.startswith("backbone.")])
    assert torch.equal(fresh.backbone.conv0p1s1.kernel, tiny_model.backbone.conv0p1s1.kernel)
    assert all(not p.requires_grad for p in fresh.backbone.parameters())
    fresh.train()
    assert not fresh.backbone.training and fresh.decoder_norm.training


def test_backbone_from_a_full_file_ignores_the_rest(tmp_path, tiny_model):
    path = tmp_path / "full.ckpt"
    _lightning_file(path, tiny_model)
    fresh = SoleModel(SoleConfig.tiny())
    report = load_backbone_weights(fresh, path)
    assert report.ok and any(k == "model.bg_feature" for k in report.ignored)


def test_config_and_model_from_checkpoint(tmp_path, tiny_model):
    path = tmp_path / "replica.ckpt"
    _lightning_file(path, tiny_model)
    data = read_checkpoint(path)
    cfg = config_from_checkpoint(data)
    assert (cfg.clip_dim, cfg.hidden_dim, cfg.num_queries, cfg.conv1_kernel_size) == (64, 32, 12, 3)
    assert cfg.voxel_size == 0.02 and cfg.dbscan_eps == 0.95 and cfg.top_k == 750
    # sizes of the backbone are not in the weights' names; give them and load the whole model
    model, report = load_sole_model(
        path,
        config=cfg.replace(
            planes=tiny_model.config.planes,
            layers=tiny_model.config.layers,
            init_dim=tiny_model.config.init_dim,
        ),
    )
    assert report.ok and not model.training


def test_code_in_a_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {"model.bg_feature": torch.zeros(1, 64)}, "hyper_parameters": Payload()},
        path,
    )
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load_sole_weights(SoleModel(SoleConfig.tiny()), path)
    assert not marker.exists()


def test_arbitrary_class_is_refused(tmp_path):
    path = tmp_path / "obj.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        read_checkpoint(path)


def test_unreadable_and_absent_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "absent.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        read_checkpoint(junk)


def test_published_hyper_parameters_under_config_are_run_with(tmp_path, tiny_model):
    """A Lightning checkpoint keeps its hydra config as hyper_parameters["config"]: a file whose
    config.* says 100 queries, top-k 300 and DBSCAN eps 0.5 is run with exactly those, and the load
    report names what was read and what defaulted."""
    from sole_ros.pipeline import PipelineSettings, load_segmenter

    path = tmp_path / "published.ckpt"
    hyper = OmegaConf.create(
        {
            "config": {
                "general": {"topk_per_image": 300, "dbscan_eps": 0.5, "scores_threshold": 0.0},
                "model": {"num_queries": 100},
            }
        }
    )
    _lightning_file(path, tiny_model, extra={"hyper_parameters": hyper})
    log: list[str] = []
    settings = PipelineSettings(
        checkpoint=str(path), clip_model="sole-tiny", clip_pretrained=None, device="cpu"
    )
    segmenter, _ = load_segmenter(settings, "cpu", log=log.append)
    assert segmenter.model.config.num_queries == 100
    assert segmenter.top_k == 300 and segmenter.dbscan_eps == 0.5
    assert segmenter.model.config.input_mode == "reference"
    report = "\n".join(log)
    assert (
        "config.model.num_queries=100" in report and "config.general.topk_per_image=300" in report
    )
    assert "config.general.dbscan_eps=0.5" in report
    assert (
        "hyper-parameters defaulted (not in the file): " in report and "voxel_size=0.02" in report
    )
    assert "config.general.scores_threshold=0.0" in report  # read, reported, not applied
    assert "300 candidates ranked per query (config.general.topk_per_image)" in report

    # the network runs 100 query seeds on a scene
    rng = np.random.default_rng(0)
    points = rng.uniform(0.0, 2.0, size=(6000, 3))
    segmenter.set_scene(points, rng.uniform(0.0, 1.0, size=(6000, 3)))
    masks, probs = segmenter.predict(["chair"])
    assert masks.shape[1] == 100 and probs.shape[0] == 100

    # an explicit query.top_k still wins over the file's
    settings = PipelineSettings(
        checkpoint=str(path), clip_model="sole-tiny", clip_pretrained=None, device="cpu", top_k=7
    )
    segmenter, _ = load_segmenter(settings, "cpu", log=log.append)
    assert segmenter.top_k == 7


import dataclasses  # noqa: E402
import re  # noqa: E402


def test_configuration_bounds_are_checked_before_a_network_is_built():
    from sole_ros.model.config import BOUNDS, ConfigError

    SoleConfig.from_dict(dataclasses.asdict(SoleConfig()))  # the paper's sizes are within bounds
    SoleConfig.from_dict(dataclasses.asdict(SoleConfig.tiny()))
    for name, value, fragment in (
        ("hidden_dim", 10**9, "hidden_dim 1000000000 is outside its bound 2..2048"),
        ("num_queries", 0, "num_queries 0 is outside its bound 1..4096"),
        ("voxel_size", float("nan"), "voxel_size nan"),
        ("planes", [8] * 7 + [10**6], "planes [8, 8, 8, 8, 8, 8, 8, 1000000]"),
        ("layers", [1] * 7, "layers must be a list of 8 numbers"),
        ("num_heads", True, "num_heads must be a whole number"),
        ("top_k", 10**7, "top_k 10000000 is outside its bound 1..1000000"),
    ):
        values = dict(dataclasses.asdict(SoleConfig.tiny()), **{name: value})
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            SoleConfig.from_dict(values)
        assert name in BOUNDS
    with pytest.raises(ConfigError, match="unknown settings bogus"):
        SoleConfig.from_dict({"bogus": 1})


def test_published_hyper_parameters_out_of_bounds_are_refused(tmp_path, tiny_model):
    from sole_ros.model.checkpoint import read_hyper_parameters

    for key, value, fragment in (
        ("model.num_queries", 10**9, "config.model.num_queries: num_queries 1000000000"),
        ("data.voxel_size", float("inf"), "config.data.voxel_size: voxel_size inf"),
        ("model.hlevels", [0, 1, 7], "hlevels [0, 1, 7] is outside its bound 0..3"),
    ):
        section, name = key.split(".")
        data = {
            "state_dict": {},
            "hyper_parameters": OmegaConf.create({"config": {section: {name: value}}}),
        }
        with pytest.raises(CheckpointError, match=re.escape(fragment)):
            read_hyper_parameters(data)
    # sizes read from the tensors go through the same bounds
    path = tmp_path / "tiny.ckpt"
    _lightning_file(path, tiny_model)
    data = read_checkpoint(path)
    data["state_dict"]["model.bg_feature"] = torch.zeros(1, 5000)
    with pytest.raises(
        CheckpointError, match="checkpoint configuration: clip_dim 5000 is outside its bound"
    ):
        config_from_checkpoint(data)


def test_non_finite_weights_are_refused_by_name(tmp_path, tiny_model):
    for bad, what in ((float("nan"), "NaN"), (float("inf"), "inf")):
        path = tmp_path / f"bad_{what}.ckpt"
        _lightning_file(path, tiny_model)
        data = torch.load(path, weights_only=False)
        data["state_dict"]["model.decoder_norm.weight"][0] = bad
        torch.save(data, path)
        with pytest.raises(CheckpointError, match=f"model.decoder_norm.weight holds {what}"):
            load_sole_weights(SoleModel(tiny_model.config), path)
    data["state_dict"]["model.backbone.conv0p1s1.kernel"][0, 0, 0] = float("nan")
    torch.save(data, path)
    with pytest.raises(
        CheckpointError, match=re.escape("model.backbone.conv0p1s1.kernel holds NaN")
    ):
        load_backbone_weights(SoleModel(tiny_model.config), path)


def test_empty_checkpoints_are_refused_with_a_reason(tmp_path):
    torch.save({}, tmp_path / "empty.ckpt")
    (tmp_path / "zero.ckpt").write_bytes(b"")
    (tmp_path / "text.ckpt").write_bytes(b"hello world")
    for name, fragment in (
        ("empty.ckpt", "holds an empty dict: no state_dict"),
        ("zero.ckpt", "the file is empty (0 bytes)"),
        ("text.ckpt", "KeyError"),
    ):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(tmp_path / name)
        reason = str(info.value).split(name, 1)[1].strip(" :")
        assert fragment in str(info.value) and reason, str(info.value)
    with pytest.raises(CheckpointError, match="state_dict is missing or empty"):
        config_from_checkpoint({"state_dict": {}})


def test_settings_within_their_ranges_that_make_a_huge_network_are_refused():
    from sole_ros.model.config import MAX_PARAMETERS, ConfigError

    paper = SoleConfig()
    actual = sum(p.numel() for p in SoleModel(paper).parameters())
    assert (
        paper.approximate_parameters() <= actual
    )  # a lower estimate: it never refuses a real network
    huge = dict(
        dataclasses.asdict(paper), planes=[1024] * 8, layers=[16] * 8
    )  # each entry within its range
    assert (
        SoleConfig.from_dict(dict(huge, planes=[1024] * 8, layers=[1] * 8)).approximate_parameters()
        < MAX_PARAMETERS
    )
    with pytest.raises(ConfigError, match=r"over 3626 M parameters .* more than the 500 M allowed"):
        SoleConfig.from_dict(huge)
