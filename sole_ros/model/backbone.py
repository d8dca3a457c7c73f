"""Res16UNet34C on MinkowskiEngine, returning the five decoder-side feature maps; SOLE's backbone,
registered as "res16unet34c" (sole_ros/model/backbone_contract.py).

Module names follow the published Mask3D/SOLE checkpoints (conv0p1s1, bn0, block1..8,
convtr4p16s2.., bntr4..7) so their state_dict keys load without renaming. MinkowskiEngine stores
kernels as [K^3, C_in, C_out] and BatchNorm as ``<name>.bn.*``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from sole_ros._minkowski import ME
from sole_ros.model.backbone_contract import Backbone, LevelShape, register_backbone
from sole_ros.model.config import ConfigError, SoleConfig

# Its settings are these flat SoleConfig fields (bounded by config.BOUNDS), not backbone_settings.
RES16UNET_FIELDS = ("planes", "layers", "init_dim", "conv1_kernel_size", "bn_momentum")


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False):
    return ME.MinkowskiConvolution(
        c_in, c_out, kernel_size=kernel, stride=stride, bias=bias, dimension=3
    )


def _conv_tr(c_in: int, c_out: int):
    return ME.MinkowskiConvolutionTranspose(
        c_in, c_out, kernel_size=2, stride=2, bias=False, dimension=3
    )


def _bn(channels: int, momentum: float):
    return ME.MinkowskiBatchNorm(channels, momentum=momentum)


class BasicBlock(nn.Module):
    """Two 3x3x3 sparse convs with BN and a residual (1x1 conv + BN when the width changes)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3)
        self.norm1 = _bn(c_out, bn_momentum)
        self.conv2 = _conv(c_out, c_out, 3)
        self.norm2 = _bn(c_out, bn_momentum)
        self.relu = ME.MinkowskiReLU(inplace=True)
        self.downsample = None
        if c_in != c_out:
            self.downsample = nn.Sequential(_conv(c_in, c_out, 1), _bn(c_out, bn_momentum))

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


@register_backbone("res16unet34c")
class Res16UNet34C(Backbone):
    """Sparse U-Net; ``forward`` returns the maps at strides 16, 8, 4, 2, 1 (coarsest first)."""

    ignored_keys = ("final.",)  # the published files' segmentation head, unused by SOLE

    def __init__(self, config: SoleConfig):
        super().__init__(config)
        p, n, m = config.planes, config.layers, config.bn_momentum
        init = config.init_dim

        def stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
            return nn.Sequential(
                *[BasicBlock(c_in if i == 0 else c_out, c_out, m) for i in range(blocks)]
            )

        self.conv0p1s1 = _conv(config.in_channels, init, config.conv1_kernel_size)
        self.bn0 = _bn(init, m)
        # encoder: a stride-2 conv (kernel 2) then a stage of residual blocks, four times
        self.conv1p1s2 = _conv(init, init, 2, stride=2)
        self.bn1 = _bn(init, m)
        self.block1 = stage(init, p[0], n[0])
        self.conv2p2s2 = _conv(p[0], p[0], 2, stride=2)
        self.bn2 = _bn(p[0], m)
        self.block2 = stage(p[0], p[1], n[1])
        self.conv3p4s2 = _conv(p[1], p[1], 2, stride=2)
        self.bn3 = _bn(p[1], m)
        self.block3 = stage(p[1], p[2], n[2])
        self.conv4p8s2 = _conv(p[2], p[2], 2, stride=2)
        self.bn4 = _bn(p[2], m)
        self.block4 = stage(p[2], p[3], n[3])
        # decoder: transposed conv, concatenate the encoder skip, a stage of blocks
        self.convtr4p16s2 = _conv_tr(p[3], p[4])
        self.bntr4 = _bn(p[4], m)
        self.block5 = stage(p[4] + p[2], p[4], n[4])
        self.convtr5p8s2 = _conv_tr(p[4], p[5])
        self.bntr5 = _bn(p[5], m)
        self.block6 = stage(p[5] + p[1], p[5], n[5])
        self.convtr6p4s2 = _conv_tr(p[5], p[6])
        self.bntr6 = _bn(p[6], m)
        self.block7 = stage(p[6] + p[0], p[6], n[6])
        self.convtr7p2s2 = _conv_tr(p[6], p[7])
        self.bntr7 = _bn(p[7], m)
        self.block8 = stage(p[7] + init, p[7], n[7])
        self.relu = ME.MinkowskiReLU(inplace=True)
        self._init_weights()

    @classmethod
    def output_shape(cls, config: SoleConfig) -> tuple[LevelShape, ...]:
        p = config.planes
        return tuple(
            LevelShape(channels, stride) for channels, stride in zip(p[3:], (16, 8, 4, 2, 1))
        )

    @classmethod
    def approximate_parameters(cls, config: SoleConfig) -> int:
        """The second 3x3x3 convolution of every block."""
        return sum(
            blocks * 27 * width * width for blocks, width in zip(config.layers, config.planes)
        )

    @classmethod
    def settings(cls, config: SoleConfig) -> dict:
        return {name: getattr(config, name) for name in RES16UNET_FIELDS}

    @classmethod
    def check_config(cls, config: SoleConfig) -> None:
        if config.backbone_settings:
            raise ConfigError(
                f"backbone {cls.name} takes its settings from {', '.join(RES16UNET_FIELDS)}, "
                f"not backbone_settings ({', '.join(sorted(map(str, config.backbone_settings)))})"
            )

    @classmethod
    def recognises(cls, tensors: dict) -> bool:
        return "conv0p1s1.kernel" in tensors

    @classmethod
    def config_from_state_dict(cls, tensors: dict) -> dict:
        """in_channels, conv1_kernel_size and init_dim from the first kernel; planes and layers from
        the blocks' names and widths when all eight stages are there."""
        changes: dict = {}
        first = tensors.get("conv0p1s1.kernel")
        if first is not None:
            changes["in_channels"] = int(first.shape[1])
            changes["conv1_kernel_size"] = round(first.shape[0] ** (1 / 3))
            changes["init_dim"] = int(first.shape[2])
        planes, layers = [], []
        for stage in range(1, 9):
            blocks = {
                int(m.group(1))
                for key in tensors
                for m in [re.match(rf"block{stage}\.(\d+)\.conv2\.kernel$", key)]
                if m
            }
            if not blocks:
                return changes
            planes.append(int(tensors[f"block{stage}.{max(blocks)}.conv2.kernel"].shape[2]))
            layers.append(len(blocks))
        changes["planes"], changes["layers"] = tuple(planes), tuple(layers)
        return changes

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, ME.MinkowskiConvolution) or isinstance(
                module, ME.MinkowskiConvolutionTranspose
            ):
                ME.utils.kaiming_normal_(module.kernel, mode="fan_out", nonlinearity="relu")
            if isinstance(module, ME.MinkowskiBatchNorm):
                nn.init.constant_(module.bn.weight, 1.0)
                nn.init.constant_(module.bn.bias, 0.0)

    def forward(self, x) -> list:
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        out_b1p2 = self.block1(self.relu(self.bn1(self.conv1p1s2(out_p1))))
        out_b2p4 = self.block2(self.relu(self.bn2(self.conv2p2s2(out_b1p2))))
        out_b3p8 = self.block3(self.relu(self.bn3(self.conv3p4s2(out_b2p4))))
        out_p16 = self.block4(self.relu(self.bn4(self.conv4p8s2(out_b3p8))))

        out_p8 = self.block5(ME.cat(self.relu(self.bntr4(self.convtr4p16s2(out_p16))), out_b3p8))
        out_p4 = self.block6(ME.cat(self.relu(self.bntr5(self.convtr5p8s2(out_p8))), out_b2p4))
        out_p2 = self.block7(ME.cat(self.relu(self.bntr6(self.convtr6p4s2(out_p4))), out_b1p2))
        out_p1 = self.block8(ME.cat(self.relu(self.bntr7(self.convtr7p2s2(out_p2))), out_p1))
        return [out_p16, out_p8, out_p4, out_p2, out_p1]


def sparse_input(coords: list[torch.Tensor], feats: list[torch.Tensor], device: torch.device):
    """One batched SparseTensor from per-scene unique integer voxel coordinates and features.

    Rows keep the given order (scene after scene), which the caller relies on to align the
    backbone's stride-1 output with its own per-voxel tensors.
    """
    batched = torch.cat(
        [
            torch.cat(
                [torch.full((c.shape[0], 1), b, dtype=torch.int32), c.to(torch.int32).cpu()], dim=1
            )
            for b, c in enumerate(coords)
        ]
    )
    features = torch.cat([f.float() for f in feats]).to(device)
    # A coordinate manager of MinkowskiEngine's own making sets torch's thread count to
    # OMP_NUM_THREADS (else every core) each time: a process could not choose its threads. This one
    # keeps the count the process has. On one thread CPU training is bit-repeatable (the kernel maps
    # then come out in the same order every run; the kernel gradients sum over them in that order).
    algorithm = ME.MinkowskiAlgorithm.SPEED_OPTIMIZED
    map_type = ME.CoordinateMapType.CUDA if features.is_cuda else ME.CoordinateMapType.CPU
    manager = ME.CoordinateManager(
        D=3,
        num_threads=torch.get_num_threads(),
        coordinate_map_type=map_type,
        minkowski_algorithm=algorithm,
    )
    return ME.SparseTensor(
        features=features,
        coordinates=batched.to(device),
        minkowski_algorithm=algorithm,
        coordinate_manager=manager,
    )
