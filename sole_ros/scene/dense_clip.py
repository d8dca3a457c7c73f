"""Dense per-patch CLIP features in the joint image-text space (MaskCLIP-style).

A CLIP ViT only aligns its pooled class token with text. MaskCLIP's observation is that the
value path of the last attention block keeps each patch's own content in a form the final
projection maps into the joint space. So the last block runs with its attention replaced by the
identity (every patch token attends only to itself: out_proj(V(ln_1(x))), then the block's
residual and MLP as usual), and ln_post plus the visual projection are applied to every patch
token instead of the class token alone.

Images keep their aspect ratio: the short side is resized to the model's input size, both sides
are rounded to whole patches, and the positional embedding grid is interpolated to match. The
result is an (h, w, D) grid of unit vectors whose cells tile the whole input image; the voxel map
samples it bilinearly at projected pixel positions (upsampling only where it is looked up).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..device import autocast, resolve_device
from .errors import InvalidInput


class DenseClipFeatures:
    def __init__(
        self,
        clip,
        device: str | torch.device | None = None,
        short_side: int | None = None,
        mixed_precision: bool = True,
    ):
        """`clip` is a sole_ros.clip.LoadedClip whose model is an open_clip ViT CLIP."""
        visual = clip.model.visual
        for name in (
            "conv1",
            "class_embedding",
            "positional_embedding",
            "ln_pre",
            "transformer",
            "ln_post",
            "proj",
        ):
            if getattr(visual, name, None) is None:
                raise TypeError(
                    f"dense CLIP features need an open_clip VisionTransformer; "
                    f"{type(visual).__name__} has no {name!r}"
                )
        if getattr(visual, "attn_pool", None) is not None:
            raise TypeError("attention-pooled vision towers (CoCa-style) are not supported")
        self.visual = visual
        self.device = (
            resolve_device(device) if device is not None else next(visual.parameters()).device
        )
        if next(visual.parameters()).device != self.device:
            raise ValueError(
                f"the CLIP model is on {next(visual.parameters()).device}, not {self.device}; "
                "load it on the device you want the features computed on"
            )
        self.feature_dim = int(clip.embed_dim)
        self.short_side = int(short_side or min(clip.image_size))
        self.patch = (
            tuple(int(p) for p in visual.patch_size)
            if isinstance(visual.patch_size, (tuple, list))
            else (int(visual.patch_size),) * 2
        )
        self.mixed_precision = mixed_precision
        self._mean = torch.tensor(clip.image_mean, dtype=torch.float32, device=self.device).view(
            1, 3, 1, 1
        )
        self._std = torch.tensor(clip.image_std, dtype=torch.float32, device=self.device).view(
            1, 3, 1, 1
        )
        self._positional_cache: dict[tuple[int, int], torch.Tensor] = {}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input size for an image: short side -> short_side, both rounded to patches."""
        scale = self.short_side / min(height, width)
        ph, pw = self.patch
        return (
            max(ph, int(round(height * scale / ph)) * ph),
            max(pw, int(round(width * scale / pw)) * pw),
        )

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        h, w = self.input_size(height, width)
        return h // self.patch[0], w // self.patch[1]

    @torch.no_grad()
    def frame_features(self, rgb: np.ndarray) -> torch.Tensor:
        """(H,W,3) uint8 RGB -> (h,w,D) float32 unit vectors on self.device."""
        return self.batch_features(np.asarray(rgb)[None])[0]

    @torch.no_grad()
    def batch_features(self, images) -> torch.Tensor:
        """(B,H,W,3) uint8 RGB (or a list of same-size images) -> (B,h,w,D), one network pass."""
        pixels = self.network_input(images)
        with autocast(self.device, self.mixed_precision):
            return self.grid_features(pixels)

    def network_input(self, images) -> torch.Tensor:
        """(B,H,W,3) uint8 RGB -> the normalised (B,3,h*patch,w*patch) input of grid_features."""
        batch = _check_images(images)
        pixels = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        size = self.input_size(batch.shape[1], batch.shape[2])
        pixels = F.interpolate(
            pixels, size=size, mode="bilinear", align_corners=False, antialias=True
        )
        return (pixels - self._mean) / self._std

    def grid_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Network input -> (B,h,w,D) unit vectors; differentiable (training the image tower
        through the path the map uses: sole_ros.training.image_tower)."""
        return F.normalize(self._patch_tokens(pixels).float(), dim=-1)

    def _positional(self, grid: tuple[int, int]) -> torch.Tensor:
        table = self.visual.positional_embedding
        if torch.is_grad_enabled() and table.requires_grad:
            return _resize_positional(table, grid)  # training it: no cache, gradients flow
        cached = self._positional_cache.get(grid)
        if cached is None:
            cached = _resize_positional(table.detach(), grid)
            self._positional_cache[grid] = cached
        return cached

    def _patch_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        visual = self.visual
        x = visual.conv1(pixels.to(visual.conv1.weight.dtype))  # B, width, h, w
        batch, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # B, h*w, width
        cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(batch, 1, -1)
        x = torch.cat([cls, x], dim=1) + self._positional((h, w)).to(x.dtype)
        x = visual.ln_pre(x)
        blocks = visual.transformer.resblocks
        batch_first = getattr(visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        if not batch_first:
            x = x.transpose(0, 1)
        x = _last_block_without_attention(blocks[-1], x)
        x = visual.ln_post(x[:, 1:])
        x = x @ visual.proj.to(x.dtype)
        return x.reshape(batch, h, w, -1)


def _resize_positional(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The class token's row and the square patch table interpolated to ``grid``."""
    base = int(round((table.shape[0] - 1) ** 0.5))
    patches = table[1:].reshape(1, base, base, -1).permute(0, 3, 1, 2).float()
    if (base, base) != grid:
        patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(table.dtype)
    return torch.cat([table[:1], patches], dim=0)


def _last_block_without_attention(block, x: torch.Tensor) -> torch.Tensor:
    """The last residual block with its attention matrix replaced by the identity."""
    attn = block.attn
    width = x.shape[-1]
    y = block.ln_1(x)
    if attn.in_proj_weight is not None:
        value_weight = attn.in_proj_weight[2 * width :]
    else:  # nn.MultiheadAttention with separate projections
        value_weight = attn.v_proj_weight
    value_bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    value = F.linear(y, value_weight, value_bias)
    head_scale = getattr(attn, "head_scale", None)
    if head_scale is not None:  # open_clip's custom Attention scales each head's output
        heads = head_scale.shape[0]
        value = (value.view(*value.shape[:-1], heads, -1) * head_scale.view(heads, 1)).flatten(-2)
    value = getattr(attn, "ln_inner", torch.nn.Identity())(value)
    out = attn.out_proj(value)
    out = getattr(block, "ln_attn", torch.nn.Identity())(out)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _check_images(images) -> np.ndarray:
    if isinstance(images, (list, tuple)):
        if not images:
            raise InvalidInput("no images given")
        shapes = {np.asarray(image).shape for image in images}
        if len(shapes) != 1:
            raise InvalidInput(f"images in one batch must share a size, got {sorted(shapes)}")
        images = np.stack([np.asarray(image) for image in images])
    batch = np.asarray(images)
    if (
        batch.dtype != np.uint8
        or batch.ndim != 4
        or batch.shape[3] != 3
        or min(batch.shape[1:3]) < 1
    ):
        raise InvalidInput(f"images must be uint8 RGB (B,H,W,3), got {batch.dtype} {batch.shape}")
    return np.ascontiguousarray(batch)
