"""SOLE: Mask3D-style transformer with multimodal fusion and the Cross-Modality Decoder.

The forward pass is split in two so that a scene can be encoded once and queried many times:

* ``encode(scenes)`` runs what does not depend on the text: the sparse backbone, the fusion of
  voxel CLIP features at each of its resolutions, the per-level decoder keys ("lin_squeeze") and their
  positional encodings, the pooling matrices, the mask features and the initial queries (farthest
  point sampling + Fourier positions). Its result, a list of ``SceneEncoding``, can be cached.
* ``decode(encodings, text_keys)`` runs the Cross-Modality Decoder (masked cross-attention to the
  voxels, cross-attention to the text keys, self-attention, FFN; 4 layers applied 3 times with
  shared weights) and the heads.

``forward(scenes, text_keys)`` does both. Parameter names follow the published checkpoints
(``model.`` prefix removed; the layout is described in sole_ros/model/checkpoint.py).

The backbone is the one ``SoleConfig.backbone`` names (sole_ros/model/backbone_contract.py); the
decoder's widths and pooling strides are the ones it reports (``output_shape``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sole_ros.model.config import SoleConfig
from sole_ros.model.decoder_layers import CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from sole_ros.model.fps import farthest_point_sample, reference_furthest_point_sample
from sole_ros.model.pooling import pooling_matrix
from sole_ros.model.positional import FourierPositionalEncoding
from sole_ros.model.voxel import VoxelScene


class PointwiseConv(nn.Module):
    """A 1x1x1 sparse convolution, i.e. a linear map per voxel, stored as MinkowskiEngine does.

    Keys ``kernel`` [C_in, C_out] and ``bias`` [1, C_out] match a MinkowskiConvolution of kernel 1,
    so the published ``mask_features_head`` loads as is, while running without a SparseTensor.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.empty(c_in, c_out))
        self.bias = nn.Parameter(torch.zeros(1, c_out))
        nn.init.kaiming_uniform_(self.kernel.T, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.kernel)


class QueryPositionMLP(nn.Module):
    """Conv1d (kernel 1) MLP 128-128-128 with ReLU after both layers, keys ``layers.{0,2}``."""

    def __init__(self, dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(dim, dim, 1), nn.ReLU(), nn.Conv1d(dim, dim, 1), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, Q, D] -> [B, Q, D]
        return self.layers(x.transpose(1, 2)).transpose(1, 2)


@dataclass
class DecoderLevel:
    """Keys of one decoder level of one scene: squeezed features, positions, pooling from stride 1."""

    keys: torch.Tensor  # [M, hidden] lin_squeeze([backbone | pooled CLIP])
    pos: torch.Tensor  # [M, hidden] Fourier encoding of the pooled raw coordinates
    pool: torch.Tensor  # sparse [M, N] average pooling from the stride-1 voxels
    # pool @ mask_features: pooled mask logits are (pool @ F) @ e = pool @ (F @ e), so the attention
    # masks of this level cost M x Q instead of N x Q per layer
    mask_features: torch.Tensor  # [M, hidden]


@dataclass
class SceneEncoding:
    """Everything about one scene that does not depend on the text; reusable across queries."""

    levels: list[DecoderLevel]  # one per configured hlevel, in decoder order
    mask_features: torch.Tensor  # [N, hidden] at stride 1
    query_feat: torch.Tensor  # [Q, hidden] initial query content
    query_pos: torch.Tensor  # [Q, hidden] query positional embedding
    query_voxels: torch.Tensor  # [Q] indices of the voxels picked by farthest point sampling
    clip: torch.Tensor  # [N, clip_dim] voxel CLIP features (for the CLIP branch at inference)
    raw_coords: torch.Tensor  # [N, 3]
    has_clip: bool
    # per level: keys/values of the voxel cross-attention, projected (inference only; filled by decode)
    projected: dict = field(default_factory=dict, repr=False)

    @property
    def num_voxels(self) -> int:
        return int(self.mask_features.shape[0])


class SoleModel(nn.Module):
    """The SOLE network. See the module docstring for the encode/decode split."""

    def __init__(self, config: SoleConfig | None = None, *, build_backbone: bool = True):
        super().__init__()
        config = config or SoleConfig()
        config.validate()
        self.config = config
        d, clip = config.hidden_dim, config.clip_dim
        backbone = config.backbone_class()
        self.level_shapes = _checked_levels(backbone, config)
        widths = [level.channels for level in self.level_shapes]
        self.backbone = backbone(config) if build_backbone else None

        self.semantic_proj = nn.Linear(clip, d)  # text keys of the CMD
        # the finest map (stride 1) gives the per-voxel features
        self.clip_proj = nn.Linear(widths[-1] + clip, d)  # query content from [backbone | CLIP]
        self.mask_features_head = PointwiseConv(widths[-1] + clip, d)
        self.query_projection = QueryPositionMLP(d)
        self.mask_embed_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.class_embed_head = nn.Linear(d, clip)
        self.bg_feature = nn.Parameter(torch.empty(1, clip))
        nn.init.kaiming_uniform_(self.bg_feature, a=5**0.5)
        self.pos_enc = FourierPositionalEncoding(d, config.gauss_scale)
        # One shared set of layers (index 0), applied num_decoders times: the published layout.
        self.cross_attention = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        CrossAttentionLayer(d, config.num_heads, config.dropout)
                        for _ in config.hlevels
                    ]
                )
            ]
        )
        self.cross_semantic_attention = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        CrossAttentionLayer(d, config.num_heads, config.dropout)
                        for _ in config.hlevels
                    ]
                )
            ]
        )
        self.self_attention = nn.ModuleList(
            [
                nn.ModuleList(
                    [
                        SelfAttentionLayer(d, config.num_heads, config.dropout)
                        for _ in config.hlevels
                    ]
                )
            ]
        )
        self.ffn_attention = nn.ModuleList(
            [
                nn.ModuleList(
                    [FFNLayer(d, config.dim_feedforward, config.dropout) for _ in config.hlevels]
                )
            ]
        )
        self.lin_squeeze = nn.ModuleList(
            [nn.ModuleList([nn.Linear(widths[h] + clip, d) for h in config.hlevels])]
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.set_backbone_frozen(config.freeze_backbone)

    # ----------------------------------------------------------------------------------- setup
    def set_backbone_frozen(self, frozen: bool) -> None:
        """A frozen backbone (SOLE's setting) has no gradients and keeps its BN statistics."""
        self._backbone_frozen = frozen
        if self.backbone is not None:
            for p in self.backbone.parameters():
                p.requires_grad_(not frozen)
            if frozen:
                self.backbone.eval()

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def train(self, mode: bool = True):
        super().train(mode)
        if self._backbone_frozen and self.backbone is not None:
            self.backbone.eval()
        return self

    def _apply(self, fn, recurse=True):
        # MinkowskiEngine built without CUDA (setup.sh's build on a machine without a GPU) runs the backbone
        # on the CPU while everything else may live on the GPU.
        super()._apply(fn, recurse)
        if self.backbone is not None and not _minkowski_has_cuda():
            for t in list(self.backbone.parameters()) + list(self.backbone.buffers()):
                if t.device.type != "cpu":
                    self.backbone.cpu()
                    break
        return self

    @property
    def device(self) -> torch.device:
        return self.bg_feature.device

    # ---------------------------------------------------------------------------------- encode
    def encode(self, scenes: list[VoxelScene]) -> list[SceneEncoding]:
        """Backbone, CLIP fusion and everything else that does not depend on the text."""
        if not scenes:
            raise ValueError("encode needs at least one scene")
        if self.backbone is None:
            raise RuntimeError("this SoleModel was built without a backbone")
        from sole_ros.model.backbone import sparse_input

        expected = self.backbone.input_channels(self.config)
        for scene in scenes:
            if scene.features.shape[1] != expected:
                raise ValueError(
                    f"backbone {self.config.backbone} takes {expected} input channels per voxel, "
                    f"the scene has {scene.features.shape[1]}"
                )
        device = self.device
        backbone_device = next(self.backbone.parameters()).device
        grad = torch.is_grad_enabled() and not self._backbone_frozen
        with torch.set_grad_enabled(grad):
            x = sparse_input(
                [s.coords for s in scenes], [s.features for s in scenes], backbone_device
            )
            maps = self.backbone(x)
        reported = [level.channels for level in self.level_shapes]
        if [m.F.shape[1] for m in maps] != reported:
            raise RuntimeError(
                f"backbone {self.config.backbone} returned maps of widths "
                f"{[m.F.shape[1] for m in maps]}, its output_shape says {reported}"
            )
        level_rows, level_feats = [], []
        for m in maps:
            coords = m.C.cpu()
            feats = m.F.to(device)
            rows = [torch.nonzero(coords[:, 0] == b).squeeze(1) for b in range(len(scenes))]
            level_rows.append([(coords[r, 1:], r) for r in rows])
            level_feats.append(feats)
        strides = [level.stride for level in self.level_shapes]

        encodings = []
        for b, scene in enumerate(scenes):
            scene = scene.to(device)
            fine_coords, fine_rows = level_rows[-1][b]
            if not torch.equal(fine_coords, scene.coords.cpu().to(fine_coords.dtype)):
                raise RuntimeError("backbone output rows are not in input order")
            fused_fine = torch.cat([level_feats[-1][fine_rows.to(device)], scene.clip], dim=1)
            mask_features = self.mask_features_head(fused_fine)
            levels = []
            for i, h in enumerate(self.config.hlevels):
                coords, rows = level_rows[h][b]
                pool = pooling_matrix(scene.coords.cpu().numpy(), coords.numpy(), strides[h]).to(
                    device
                )
                clip = torch.sparse.mm(pool, scene.clip)
                raw = torch.sparse.mm(pool, scene.raw_coords)
                fused = torch.cat([level_feats[h][rows.to(device)], clip], dim=1)
                keys = self.lin_squeeze[0][i](fused)
                pos = self.pos_enc(raw, raw.min(0).values, raw.max(0).values)
                levels.append(
                    DecoderLevel(
                        keys=keys,
                        pos=pos,
                        pool=pool,
                        mask_features=torch.sparse.mm(pool, mask_features.detach()),
                    )
                )

            sampler = (
                reference_furthest_point_sample
                if self.config.input_mode == "reference"
                else farthest_point_sample
            )
            fps = sampler(scene.coords.float(), self.config.num_queries)
            query_feat = self.clip_proj(fused_fine[fps])
            raw = scene.raw_coords
            query_pos = self.pos_enc(raw[fps], raw.min(0).values, raw.max(0).values)
            query_pos = self.query_projection(query_pos[None])[0]
            encodings.append(
                SceneEncoding(
                    levels=levels,
                    mask_features=mask_features,
                    query_feat=query_feat,
                    query_pos=query_pos,
                    query_voxels=fps,
                    clip=scene.clip,
                    raw_coords=scene.raw_coords,
                    has_clip=scene.has_clip,
                )
            )
        return encodings

    # ---------------------------------------------------------------------------------- decode
    def semantic_logits(self, embeds: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """[..., Q, clip] normalised embeddings x [T, clip] text -> [..., Q, T + 1] (last: background).

        Text columns are 100 x cosine; the background column is 100 x the dot product with the
        learned (unnormalised) background embedding, as in the reference implementation.
        """
        scale = self.config.logit_scale
        return torch.cat([scale * embeds @ text.t(), scale * embeds @ self.bg_feature.t()], dim=-1)

    def _heads(self, queries, encodings, text_keys):
        q = self.decoder_norm(queries)
        mask_embed = self.mask_embed_head(q)
        embeds = F.normalize(self.class_embed_head(q), dim=-1)
        masks = [enc.mask_features @ mask_embed[b].t() for b, enc in enumerate(encodings)]
        logits = [self.semantic_logits(embeds[b], t) for b, t in enumerate(text_keys)]
        return {"pred_masks": masks, "pred_embeds": embeds, "pred_logits": logits}

    def _voxel_memory(self, encodings, mask_embed, level_index: int):
        """Projected keys/values and the allowed-attention mask of one level, batched over scenes."""
        sizes = [enc.levels[level_index].keys.shape[0] for enc in encodings]
        size = max(sizes)
        if self.training:
            size = min(size, self.config.sample_sizes[self.config.hlevels[level_index]])
        layer = self.cross_attention[0][level_index]
        # Outside training the projected voxel keys depend on the scene only: keep them with it.
        reuse = not self.training and not torch.is_grad_enabled()
        device = mask_embed.device
        ks, vs, allowed = [], [], []
        for b, (enc, n) in enumerate(zip(encodings, sizes)):
            level = enc.levels[level_index]
            # attention mask: a voxel is hidden from a query where its pooled mask prob is < 0.5
            pooled = level.mask_features.float() @ mask_embed[b].detach().float().t()
            visible = pooled.sigmoid() >= 0.5  # [M, Q]
            if n > size:  # training: a random subset of the voxels
                idx = torch.randperm(n, device=device)[:size]
                k, v = layer.project_memory(level.keys[idx][None], level.pos[idx][None])
                visible = visible[idx]
            elif reuse:
                if level_index not in enc.projected:
                    enc.projected[level_index] = layer.project_memory(
                        level.keys[None], level.pos[None]
                    )
                k, v = enc.projected[level_index]
            else:
                k, v = layer.project_memory(level.keys[None], level.pos[None])
            vis = visible.t()  # [Q, M']
            vis = torch.where(
                vis.any(dim=1, keepdim=True), vis, True
            )  # a query that would see nothing sees all
            pad = size - vis.shape[1]
            if pad:
                k = F.pad(k, (0, 0, 0, pad))
                v = F.pad(v, (0, 0, 0, pad))
                vis = F.pad(vis, (0, pad), value=False)
            ks.append(k)
            vs.append(v)
            allowed.append(vis)
        if len(ks) == 1:
            return (ks[0], vs[0]), allowed[0][None]
        return (torch.cat(ks), torch.cat(vs)), torch.stack(allowed)

    def decode(
        self, encodings: list[SceneEncoding], text_keys: list[torch.Tensor], return_aux: bool = True
    ) -> dict:
        """Run the Cross-Modality Decoder and the heads.

        text_keys: per scene a [T_b, clip_dim] tensor of L2-normalised CLIP text embeddings (T_b >= 1):
        the captions of the scene's objects in training, the prompts asked at inference.

        Returns a dict:
          pred_masks: list per scene of [N_b, Q] mask logits over the stride-1 voxels
          pred_embeds: [B, Q, clip_dim] L2-normalised semantic embeddings (CLIP text space)
          pred_logits: list per scene of [Q, T_b + 1] semantic logits (last column: background)
          aux_outputs: list (one per decoder layer application, 12 for the paper's setting) of dicts
                       with the same three keys, predicted before that layer; empty when
                       return_aux is False (inference: only the last prediction is used)
          query_voxels: list per scene of [Q] indices of the query seed voxels
        """
        if len(text_keys) != len(encodings):
            raise ValueError(f"{len(encodings)} scenes but {len(text_keys)} sets of text keys")
        device = self.device
        text_keys = [t.to(device=device, dtype=torch.float32) for t in text_keys]
        for t in text_keys:
            if t.ndim != 2 or t.shape[1] != self.config.clip_dim or t.shape[0] == 0:
                raise ValueError(
                    f"text keys must be [T >= 1, {self.config.clip_dim}], got {tuple(t.shape)}"
                )
        n_text = max(t.shape[0] for t in text_keys)
        text = torch.stack(
            [F.pad(self.semantic_proj(t), (0, 0, 0, n_text - t.shape[0])) for t in text_keys]
        )
        text_allowed = torch.stack(
            [torch.arange(n_text, device=device) < t.shape[0] for t in text_keys]
        )
        text_allowed = text_allowed[:, None, :].expand(-1, self.config.num_queries, -1)

        queries = torch.stack([e.query_feat for e in encodings])
        query_pos = torch.stack([e.query_pos for e in encodings])
        aux = []
        for _ in range(self.config.num_decoders):
            for i in range(self.config.num_levels):
                if return_aux:
                    aux.append(self._heads(queries, encodings, text_keys))
                mask_embed = self.mask_embed_head(self.decoder_norm(queries))
                kv, allowed = self._voxel_memory(encodings, mask_embed, i)
                x = self.cross_attention[0][i](queries, allowed=allowed, query_pos=query_pos, kv=kv)
                x = self.cross_semantic_attention[0][i](x, text, text_allowed, query_pos=query_pos)
                x = self.self_attention[0][i](x, query_pos=query_pos)
                queries = self.ffn_attention[0][i](x)
        final = self._heads(queries, encodings, text_keys)
        final["aux_outputs"] = aux
        final["query_voxels"] = [e.query_voxels for e in encodings]
        return final

    def forward(self, scenes: list[VoxelScene], text_keys: list[torch.Tensor]) -> dict:
        """encode + decode; see ``decode`` for the outputs."""
        return self.decode(self.encode(scenes), text_keys)


def _checked_levels(backbone, config: SoleConfig) -> tuple:
    """The backbone's reported maps, refused unless the decoder can use them: coarsest first, strides
    powers of two (the pooling halves the resolution step by step), the last at stride 1."""
    levels = tuple(backbone.output_shape(config))
    strides = [level.stride for level in levels]
    if (
        len(levels) < 2
        or strides[-1] != 1
        or any(s < 1 or s & (s - 1) for s in strides)
        or any(a <= b for a, b in zip(strides, strides[1:]))
        or any(level.channels < 1 for level in levels)
    ):
        raise ValueError(
            f"backbone {config.backbone}: output_shape must give at least two maps with positive "
            f"widths, coarsest first, at strides that are powers of two ending at 1, "
            f"not {[(level.channels, level.stride) for level in levels]}"
        )
    return levels


def _minkowski_has_cuda() -> bool:
    try:
        from sole_ros._minkowski import ME

        return bool(ME.is_cuda_available())
    except Exception:  # noqa: BLE001 - no MinkowskiEngine at all: nothing to keep on the CPU
        return True
