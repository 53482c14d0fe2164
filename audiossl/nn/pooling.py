"""Pooling over the valid frames of each item: masked mean, mean + standard deviation, attentive statistics.

The one implementation behind every utterance-level pooling in audiossl (downstream heads,
``Embedder`` pooling, DINO's student pooling, speaker clustering, HuBERT's topic head).

Rules every function here keeps:

* Lengths travel with the frames: ``hidden`` is (..., B, S, D) with ``lengths`` (B,), and a
  valid item's result never depends on its padding (a padded batch equals each item alone).
* **An empty item (length 0) pools to zeros**, never NaN: its mean, its standard deviation
  and its attention weights are all zero. A length-1 item has a mean equal to its frame and a
  standard deviation of ``sqrt(eps)`` (the variance floor), like any item whose frames agree.
* The standard deviation is the population one (divide by the number of frames, or weights
  that sum to 1), computed in two passes (``sum w (x - mean)^2``) in at least float32, and
  returned in the dtype of ``hidden``. ``eps`` floors the variance so that the square root
  keeps a finite gradient; use ``eps > 0`` wherever gradients flow.

Attentive statistics pooling follows Okabe et al., "Attentive Statistics Pooling for Deep
Speaker Embedding", Interspeech 2018: a small attention network scores every frame, a softmax
over the valid frames turns the scores into weights, and the weighted mean and standard
deviation are returned.
"""

from __future__ import annotations

import torch
from torch import nn

from audiossl.nn.masking import lengths_to_mask


def valid_weights(lengths: torch.Tensor, max_length: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform weights over each item's valid frames (B, S, 1): ``1 / length`` there, 0 on padding and empty items."""
    valid = lengths_to_mask(lengths, max_length).unsqueeze(-1).to(dtype)  # (B, S, 1)
    return valid / valid.sum(dim=1, keepdim=True).clamp_min(1.0)


def masked_mean(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean of the valid frames of each item: (..., B, S, D) + lengths (B,) -> (..., B, D); empty items give zeros."""
    valid = lengths_to_mask(lengths.to(hidden.device), hidden.shape[-2]).unsqueeze(-1)  # (B, S, 1)
    count = valid.sum(dim=-2).clamp_min(1).to(hidden.dtype)  # (B, 1)
    return hidden.masked_fill(~valid, 0.0).sum(dim=-2) / count  # (..., B, D)


def weighted_mean_std(hidden: torch.Tensor, weights: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Weighted mean and standard deviation over frames: (..., B, S, D), weights (..., B, S, 1) -> (..., B, 2D).

    Each item's weights sum to 1 over its valid frames and are 0 on padding; an item whose
    weights are all 0 (an empty item) gives zeros. Padding frames must be finite (callers
    zero them): ``0 * inf`` would be NaN.
    """
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    frames, weights = hidden.to(dtype), weights.to(dtype)
    mean = (weights * frames).sum(dim=-2)  # (..., B, D)
    variance = (weights * (frames - mean.unsqueeze(-2)).square()).sum(dim=-2)  # (..., B, D)
    std = variance.clamp_min(eps).sqrt()
    if eps > 0:  # with eps == 0 the floor is already 0; otherwise empty items would keep sqrt(eps)
        std = std * (weights.sum(dim=-2) > 0).to(dtype)  # (..., B, 1): empty items -> 0
    return torch.cat([mean, std], dim=-1).to(hidden.dtype)  # (..., B, 2D)


def masked_mean_std(hidden: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean and population standard deviation of the valid frames: (..., B, S, D) + lengths (B,) -> (..., B, 2D)."""
    valid = lengths_to_mask(lengths.to(hidden.device), hidden.shape[-2]).unsqueeze(-1)  # (B, S, 1)
    weights = valid_weights(lengths.to(hidden.device), hidden.shape[-2])  # (B, S, 1)
    return weighted_mean_std(hidden.masked_fill(~valid, 0.0), weights, eps)


def attentive_mean_std(
    hidden: torch.Tensor, lengths: torch.Tensor, attention: nn.Module, eps: float = 1e-5
) -> torch.Tensor:
    """Attention-weighted mean and std: (B, S, D) + lengths (B,) -> (B, 2D); ``attention`` maps (B, S, D) -> (B, S, 1).

    The softmax runs over each item's valid frames only; padding is zeroed before the attention
    network sees it, so it cannot leak NaN or inf into the result.
    """
    valid = lengths_to_mask(lengths.to(hidden.device), hidden.shape[1]).unsqueeze(-1)  # (B, S, 1)
    hidden = hidden.masked_fill(~valid, 0.0)
    scores = attention(hidden).float().masked_fill(~valid, float("-inf"))  # (B, S, 1)
    weights = scores.softmax(dim=1).masked_fill(~valid, 0.0)  # empty items: NaN rows -> all zero
    return weighted_mean_std(hidden, weights, eps)


class MeanPool(nn.Module):
    """Mean of the valid frames: (B, S, D) -> (B, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return masked_mean(hidden, lengths)


class StatsPool(nn.Module):
    """Mean and standard deviation of the valid frames (x-vector statistics pooling): (B, S, D) -> (B, 2D)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.out_dim = 2 * dim
        self.eps = eps

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return masked_mean_std(hidden, lengths, self.eps)


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: (B, S, D) -> (B, 2D) weighted mean and std.

    Frame scores ``v^T tanh(W h_t + b)`` (``attention_dim`` hidden units), softmax over the
    valid frames of each item only.
    """

    def __init__(self, dim: int, attention_dim: int = 128, eps: float = 1e-5):
        super().__init__()
        self.out_dim = 2 * dim
        self.eps = eps
        self.attention = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return attentive_mean_std(hidden, lengths, self.attention, self.eps)
