"""Utterance pooling over valid frames: mean, mean + standard deviation, attentive statistics.

Utterance-level tasks (speaker, emotion) turn (B, S, D) frames into one (B, D') vector per
item. Attentive statistics pooling (Okabe et al., "Attentive Statistics Pooling for Deep
Speaker Embedding", Interspeech 2018) learns a per-frame weight from a small attention
network and returns the weighted mean and weighted standard deviation, so the task decides
which frames matter. Every pooling ignores padding: a padded batch gives what each item
gives alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.downstream.featurizer import mean_pool
from audiossl.nn.masking import lengths_to_mask
from audiossl.registry import Registry


def _masked_stats(hidden: torch.Tensor, weights: torch.Tensor, eps: float) -> torch.Tensor:
    """Weighted mean and std over frames: (B, S, D) with weights (B, S, 1) summing to 1 -> (B, 2D)."""
    mean = (weights * hidden).sum(dim=1)  # (B, D)
    second = (weights * hidden.square()).sum(dim=1)  # (B, D)
    std = (second - mean.square()).clamp_min(eps).sqrt()  # (B, D)
    return torch.cat([mean, std], dim=-1)  # (B, 2D)


class MeanPool(nn.Module):
    """Mean of the valid frames: (B, S, D) -> (B, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return mean_pool(hidden, lengths)


class StatsPool(nn.Module):
    """Mean and standard deviation of the valid frames (x-vector statistics pooling): (B, S, D) -> (B, 2D)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.out_dim = 2 * dim
        self.eps = eps

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = lengths_to_mask(lengths.to(hidden.device), hidden.shape[1]).unsqueeze(-1)  # (B, S, 1)
        weights = valid.to(hidden.dtype) / valid.sum(dim=1, keepdim=True).clamp_min(1).to(hidden.dtype)
        return _masked_stats(hidden.masked_fill(~valid, 0.0), weights, self.eps)


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
        valid = lengths_to_mask(lengths.to(hidden.device), hidden.shape[1]).unsqueeze(-1)  # (B, S, 1)
        hidden = hidden.masked_fill(~valid, 0.0)
        scores = self.attention(hidden).float().masked_fill(~valid, float("-inf"))  # (B, S, 1)
        weights = scores.softmax(dim=1).nan_to_num(0.0).to(hidden.dtype)  # items without frames: all zero
        return _masked_stats(hidden, weights, self.eps)


class PooledNorm(nn.BatchNorm1d):
    """Standardise pooled vectors (B, D) per feature, without a learned affine (MAE's linear-probe norm).

    He et al. ("Masked Autoencoders Are Scalable Vision Learners", 2022) put a BatchNorm
    without affine parameters before a linear probe: features of very different scales and
    offsets (raw log energies, un-normalised encoder outputs) then train as fast as normalised
    ones. Batch statistics in training (running statistics for a batch of one, which has no
    variance), running statistics in evaluation.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__(dim, eps=eps, momentum=momentum, affine=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.training and pooled.shape[0] < 2:
            return F.batch_norm(pooled, self.running_mean, self.running_var, None, None, False, 0.0, self.eps)
        return super().forward(pooled)


#: Pooling modules by name; each is built as ``cls(dim)`` and has ``.out_dim``.
POOLINGS: Registry[type[nn.Module]] = Registry("pooling")
POOLINGS.register("mean")(MeanPool)
POOLINGS.register("stats")(StatsPool)
POOLINGS.register("attentive")(AttentiveStatsPool)


def create_pooling(name: str, dim: int) -> nn.Module:
    """A pooling module by name (``mean``, ``stats``, ``attentive``) for frames of width ``dim``."""
    return POOLINGS.get(name)(dim)
