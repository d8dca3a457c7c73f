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


def multihead_attention(mha: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-first attention with ``mha``'s weights. allowed: bool [B, Lq, Lk] (True = may attend)."""
    B, Lq, E = query.shape
    Lk = key.shape[1]
    h = mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).view(B, Lq, h, E // h).transpose(1, 2)
    k = F.linear(key, w_k, b_k).view(B, Lk, h, E // h).transpose(1, 2)
    v = F.linear(value, w_v, b_v).view(B, Lk, h, E // h).transpose(1, 2)
    mask = None if allowed is None else allowed[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_proj(out.transpose(1, 2).reshape(B, Lq, E))


def _xavier(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class CrossAttentionLayer(nn.Module):
    """Queries attend to keys (voxels or text); residual, then LayerNorm (post-norm)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt, memory, allowed=None, pos=None, query_pos=None):
        q = tgt if query_pos is None else tgt + query_pos
        k = memory if pos is None else memory + pos
        out = multihead_attention(self.multihead_attn, q, k, memory, allowed)
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
