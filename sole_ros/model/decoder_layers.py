"""The layers of the Cross-Modality Decoder: post-norm attention and FFN blocks.

Parameters live in ``nn.MultiheadAttention`` modules (so published keys such as
``cross_attention.0.1.multihead_attn.in_proj_weight`` load as they are), but the attention itself
runs through ``scaled_dot_product_attention`` with a mask broadcast over heads: with tens of
thousands of voxel keys a per-head copy of the mask would cost more than the attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def project_memory(mha: nn.MultiheadAttention, key: torch.Tensor, value: torch.Tensor):
    """Keys and values of an attention, projected and split into heads: [B, heads, L, E / heads].

    They depend only on the memory, so a decoder that attends to the same voxels again (another
    query of a cached scene) can keep them.
    """
    B, L, E = key.shape
    h = mha.num_heads
    _, w_k, w_v = mha.in_proj_weight.chunk(3)
    _, b_k, b_v = mha.in_proj_bias.chunk(3)
    k = F.linear(key, w_k, b_k).view(B, L, h, E // h).transpose(1, 2)
    v = F.linear(value, w_v, b_v).view(B, L, h, E // h).transpose(1, 2)
    return k, v


def multihead_attention(
    mha: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor | None,
    value: torch.Tensor | None,
    allowed: torch.Tensor | None = None,
    kv: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Batch-first attention with ``mha``'s weights. allowed: bool [B, Lq, Lk] (True = may attend).

    kv: keys and values already projected by ``project_memory`` (then key/value are not used).
    """
    B, Lq, E = query.shape
    h = mha.num_heads
    w_q = mha.in_proj_weight[:E]
    b_q = mha.in_proj_bias[:E]
    q = F.linear(query, w_q, b_q).view(B, Lq, h, E // h).transpose(1, 2)
    k, v = kv if kv is not None else project_memory(mha, key, value)
    mask = None if allowed is None else allowed[:, None]
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=mha.dropout if mha.training else 0.0
    )
    return mha.out_proj(out.transpose(1, 2).reshape(B, Lq, E))


def _xavier(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class CrossAttentionLayer(nn.Module):
    """Queries attend to keys (voxels or text); residual, then LayerNorm (post-norm)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def project_memory(self, memory, pos=None):
        return project_memory(self.multihead_attn, memory if pos is None else memory + pos, memory)

    def forward(self, tgt, memory=None, allowed=None, pos=None, query_pos=None, kv=None):
        """memory [B, L, E] with positions ``pos``, or ``kv`` from ``project_memory``."""
        q = tgt if query_pos is None else tgt + query_pos
        if kv is None:
            kv = self.project_memory(memory, pos)
        out = multihead_attention(self.multihead_attn, q, None, None, allowed, kv=kv)
        return self.norm(tgt + self.dropout(out))


class SelfAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt, query_pos=None):
        qk = tgt if query_pos is None else tgt + query_pos
        out = multihead_attention(self.self_attn, qk, qk, tgt)
        return self.norm(tgt + self.dropout(out))


class FFNLayer(nn.Module):
    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt):
        out = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm(tgt + self.dropout(out))
