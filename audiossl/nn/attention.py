"""Multi-head self-attention over padded batches and the pre-norm transformer block.

Attention goes through :func:`torch.nn.functional.scaled_dot_product_attention`, which picks
the fused kernel for the device (flash / memory-efficient on GPU, a flash-style kernel on CPU)
and never stores the (S, S) matrix when it can avoid it. Padding keys are masked; padding
queries still attend to the valid keys of their item, so their outputs are finite, and the
block zeroes them. An item with no valid key at all would produce NaN: encoders reject
zero-length items before they get here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, S) padding mask (True = padding) -> (B, 1, 1, S) SDPA mask (True = attend), or None.

    None when nothing is padded, which lets SDPA choose its fastest kernel.
    """
    if padding_mask is None or not bool(padding_mask.any()):
        return None
    return ~padding_mask[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, S, D), ``attn_mask`` (B, 1, 1, S) bool True = attend (see :func:`attention_mask`)."""
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads)  # (B, S, 3, H, Dh)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, S, Dh)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, S, Dh)
        return self.out(out.transpose(1, 2).reshape(batch, length, dim))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.activation = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.activation(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (ViT / SSAST): ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.attention = SelfAttention(dim, num_heads, dropout=attention_dropout)
        self.attention_dropout = nn.Dropout(dropout)
        self.mlp_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio), dropout=dropout)

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` (B, S, D); ``padding_mask`` (B, S) True at padding; ``attn_mask`` from
        :func:`attention_mask` (computed once per batch by the caller). Padding outputs are zero."""
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), attn_mask))
        x = x + self.mlp(self.mlp_norm(x))
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return x
