"""The backbone contract and registry: another sparse network in place of Res16UNet34C, named by the
configuration, sized by its own settings, saved and loaded; old configurations and files unchanged."""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sole_ros._minkowski import ME
from sole_ros.model import SoleConfig, SoleModel, voxelize
from sole_ros.model.backbone import Res16UNet34C
from sole_ros.model.backbone_contract import (
    Backbone,
    LevelShape,
    Setting,
    UnknownBackboneError,
    backbone_class,
    register_backbone,
    registered_backbones,
)
from sole_ros.model.checkpoint import (
    config_from_checkpoint,
    load_sole_model,
    load_sole_weights,
    read_checkpoint,
)
from sole_ros.model.config import MAX_PARAMETERS, ConfigError

# One thread: these networks are small, and on a shared 2-core machine OpenMP threads that wait
# for each other made them ~20x slower.
torch.set_num_threads(1)

DEMO_WEIGHTS = pathlib.Path(__file__).resolve().parents[2] / "sole_ros" / "weights" / "demo.ckpt"


@register_backbone("toy_pyramid")
class ToyPyramid(Backbone):
    """A stem at stride 1, then a stride-2 convolution per coarser map: as many maps as widths."""

    settings_spec = {"widths": Setting((24, 16, 8), 1, 4096, lengths=(2, 5))}  # coarsest first

    def __init__(self, config: SoleConfig):
        super().__init__(config)
        widths = self.settings(config)["widths"]
        fine = widths[-1]
        self.stem = ME.MinkowskiConvolution(
            self.input_channels(config), fine, kernel_size=3, dimension=3
        )
        self.down = nn.ModuleList()
        for c_in, c_out in zip(widths[::-1], widths[-2::-1]):
            self.down.append(
                nn.Sequential(
                    ME.MinkowskiConvolution(c_in, c_out, kernel_size=2, stride=2, dimension=3),
                    ME.MinkowskiBatchNorm(c_out),
                    ME.MinkowskiReLU(),
                )
            )

    @classmethod
    def output_shape(cls, config):
        widths = cls.settings(config)["widths"]
        return tuple(LevelShape(w, 2 ** (len(widths) - 1 - i)) for i, w in enumerate(widths))

    @classmethod
    def approximate_parameters(cls, config):
        widths = cls.settings(config)["widths"]
        return 27 * config.in_channels * widths[-1] + sum(
            8 * a * b for a, b in zip(widths, widths[1:])
        )

    @classmethod
    def recognises(cls, tensors):
        return "stem.kernel" in tensors

    @classmethod
    def config_from_state_dict(cls, tensors):
        stem = tensors["stem.kernel"]
        steps = sorted(
            int(m.group(1))
            for key in tensors
            for m in [re.match(r"down\.(\d+)\.0\.kernel$", key)]
            if m
        )
        widths = [int(tensors[f"down.{i}.0.kernel"].shape[2]) for i in reversed(steps)] + [
            int(stem.shape[2])
        ]
        return {"in_channels": int(stem.shape[1]), "backbone_settings": {"widths": widths}}

    def forward(self, x):
        maps = [self.stem(x)]
        for step in self.down:
            maps.append(step(maps[-1]))
        return maps[::-1]


def _toy_config(**overrides) -> SoleConfig:
    base = dict(backbone="toy_pyramid", backbone_settings={"widths": [28, 20, 12]}, hlevels=(0, 1))
    return SoleConfig.tiny(**{**base, **overrides})


def _scene(cfg, n=1500, seed=0):
    rng = np.random.default_rng(seed)
    return voxelize(
        rng.uniform(0, 1, (n, 3)),
        rng.uniform(0, 1, (n, 3)),
        rng.normal(size=(n, cfg.clip_dim)),
        cfg,
    )


def _text(cfg, t, seed=0):
    return F.normalize(
        torch.randn(t, cfg.clip_dim, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def _shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


def test_a_registered_backbone_sizes_the_decoder_and_runs_a_forward_pass():
    cfg = _toy_config()
    assert "toy_pyramid" in registered_backbones() and backbone_class("toy_pyramid") is ToyPyramid
    torch.manual_seed(0)
    model = SoleModel(cfg).eval()
    assert isinstance(model.backbone, ToyPyramid)
    assert model.level_shapes == (LevelShape(28, 4), LevelShape(20, 2), LevelShape(12, 1))
    assert cfg.level_channels == (28, 20, 12)
    # decoder keys from the maps hlevels name, query content and mask features from the stride-1 map
    assert [layer.in_features for layer in model.lin_squeeze[0]] == [28 + 64, 20 + 64]
    assert model.clip_proj.in_features == 12 + 64 and model.mask_features_head.kernel.shape == (
        12 + 64,
        32,
    )

    scene = _scene(cfg)
    with torch.no_grad():
        encoding = model.encode([scene])
        out = model.decode(encoding, [_text(cfg, 3)])
    # each decoder level pools to the voxels of its map's stride
    coords = scene.coords.numpy()
    for level, stride in zip(encoding[0].levels, (4, 2)):
        assert level.keys.shape[0] == len(np.unique(np.floor_divide(coords, stride), axis=0))
    q = cfg.num_queries
    assert out["pred_masks"][0].shape == (scene.num_voxels, q) and out["pred_logits"][0].shape == (
        q,
        4,
    )
    assert len(out["aux_outputs"]) == cfg.num_decoders * 2
    assert (
        torch.isfinite(out["pred_masks"][0]).all() and torch.isfinite(out["pred_logits"][0]).all()
    )


def test_an_unfrozen_registered_backbone_trains():
    cfg = _toy_config(
        freeze_backbone=False, backbone_settings={"widths": [16, 8, 8, 4]}, hlevels=(0, 1, 2)
    )
    torch.manual_seed(1)
    model = SoleModel(cfg).train()
    assert [level.stride for level in model.level_shapes] == [8, 4, 2, 1]
    out = model([_scene(cfg, n=600, seed=1)], [_text(cfg, 2)])
    out["pred_masks"][0].mean().backward()
    assert (
        model.backbone.stem.kernel.grad is not None
        and model.backbone.down[2][0].kernel.grad is not None
    )


def test_a_registered_backbone_is_saved_and_loaded_like_any_run(tmp_path):
    from sole_ros.training.checkpointing import save_checkpoint
    from sole_ros.training.config import TrainConfig

    cfg = _toy_config()
    torch.manual_seed(2)
    model = SoleModel(cfg)
    path = save_checkpoint(tmp_path / "run.pt", model, cfg, TrainConfig())
    stored = read_checkpoint(path)["hyper_parameters"]["sole_config"]
    assert stored["backbone"] == "toy_pyramid" and stored["backbone_settings"] == {
        "widths": [28, 20, 12]
    }
    loaded = SoleConfig.from_dict(stored)
    assert loaded == cfg
    report = load_sole_weights(SoleModel(loaded), path)
    assert report.ok and not report.ignored, report.describe()


def test_the_checkpoint_loader_asks_the_backbone_for_a_published_files_settings(tmp_path):
    torch.manual_seed(3)
    model = SoleModel(_toy_config(backbone_settings={"widths": [20, 12, 12]}))
    path = tmp_path / "published.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    # the backbone is found by the layout of its tensors, its widths read from their shapes
    cfg = config_from_checkpoint(read_checkpoint(path), base=SoleConfig.tiny(hlevels=(0, 1)))
    assert cfg.backbone == "toy_pyramid" and cfg.backbone_settings == {"widths": (20, 12, 12)}
    loaded, report = load_sole_model(path, config=cfg)
    assert report.ok, report.describe()
    # a Res16UNet34C file still reads as one, whatever the base configuration names
    res16 = tmp_path / "res16.ckpt"
    tiny = SoleModel(SoleConfig.tiny())
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny.state_dict().items()}}, res16)
    cfg = config_from_checkpoint(read_checkpoint(res16), base=_toy_config())
    assert cfg.backbone == "res16unet34c" and cfg.backbone_settings == {}
    assert (cfg.planes, cfg.layers, cfg.init_dim) == (
        tiny.config.planes,
        tiny.config.layers,
        tiny.config.init_dim,
    )


def test_an_unknown_backbone_is_refused_naming_the_registered_ones():
    with pytest.raises(
        UnknownBackboneError,
        match=r"unknown backbone 'pointnet9000': registered backbones are "
        r".*res16unet34c.*toy_pyramid",
    ):
        SoleConfig.tiny(backbone="pointnet9000").validate()
    with pytest.raises(ConfigError, match="model configuration: unknown backbone 'pointnet9000'"):
        SoleConfig.from_dict(dict(dataclasses.asdict(SoleConfig.tiny()), backbone="pointnet9000"))
    with pytest.raises(ConfigError, match="unknown backbone"):
        SoleModel(SoleConfig.tiny(backbone="pointnet9000"))
    with pytest.raises(ConfigError, match="backbone must be a name"):
        SoleConfig.tiny(backbone=7).validate()


def test_a_backbones_settings_are_checked_before_it_is_built():
    for settings, fragment in (
        ({"widths": [28, 10**6, 12]}, "widths [28, 1000000, 12] is outside its bound 1..4096"),
        ({"widths": [8]}, "widths must be a list of 2..5 numbers"),
        ({"widths": [8, 4.5]}, "widths must be a whole number"),
        ({"depth": 3}, "unknown backbone_settings depth (it takes: widths)"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"backbone toy_pyramid: {fragment}")):
            _toy_config(backbone_settings=settings).validate()
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "hlevels [0, 1, 2]: backbone toy_pyramid has 3 maps, so decoder levels index 0..1"
        ),
    ):
        _toy_config(hlevels=(0, 1, 2)).validate()
    with pytest.raises(ConfigError, match="res16unet34c takes its settings from planes, layers"):
        SoleConfig.tiny(backbone_settings={"widths": [8, 8]}).validate()
    # a registered backbone's estimate counts against MAX_PARAMETERS
    huge = _toy_config(backbone_settings={"widths": [4096] * 5}, hlevels=(0, 1, 2, 3))
    assert huge.approximate_parameters() > MAX_PARAMETERS
    with pytest.raises(
        ConfigError, match=r"over 537 M parameters \(backbone toy_pyramid: widths \[4096, 4096"
    ):
        huge.validate()


def test_registering_is_checked():
    with pytest.raises(TypeError, match="not a subclass"):
        register_backbone("plain")(nn.Module)

    class Partial(Backbone):
        def forward(self, x):
            return [x]

    with pytest.raises(TypeError, match="does not define approximate_parameters, output_shape"):
        register_backbone("partial")(Partial)

    class Other(ToyPyramid):
        pass

    with pytest.raises(ValueError, match="'toy_pyramid' is already registered"):
        register_backbone("toy_pyramid")(Other)
    assert "partial" not in registered_backbones() and backbone_class("toy_pyramid") is ToyPyramid


def test_an_old_flat_configuration_builds_the_same_res16unet34c():
    """A sole_config without the backbone's name (every file written before it) is Res16UNet34C with
    its flat settings: the shipped demo weights' configuration builds exactly their keys and shapes."""
    stored = read_checkpoint(DEMO_WEIGHTS)
    flat = stored["hyper_parameters"]["sole_config"]
    assert "backbone" not in flat and "backbone_settings" not in flat
    cfg = SoleConfig.from_dict(flat)
    assert cfg.backbone == "res16unet34c" and cfg.backbone_settings == {}
    model = SoleModel(cfg)
    assert type(model.backbone) is Res16UNet34C
    assert _shapes(model.state_dict()) == {
        k[len("model.") :]: s for k, s in _shapes(stored["state_dict"]).items()
    }
    assert load_sole_weights(model, DEMO_WEIGHTS, data=stored).ok
    # and a flat tiny configuration gives the network a directly built Res16UNet34C has
    tiny = {
        k: v
        for k, v in dataclasses.asdict(SoleConfig.tiny()).items()
        if not k.startswith("backbone")
    }
    built = SoleModel(SoleConfig.from_dict(tiny)).backbone.state_dict()
    assert _shapes(built) == _shapes(Res16UNet34C(SoleConfig.tiny()).state_dict())
    # Res16UNet34C's maps: planes[3:] at strides 16..1, as the decoder has always read them
    assert SoleConfig().level_shapes == tuple(
        LevelShape(c, s) for c, s in zip((256, 256, 128, 96, 96), (16, 8, 4, 2, 1))
    )
