"""Utterance pooling for downstream heads: the pooling registry and the pooled-vector norm.

The pooling modules themselves (mean, mean + standard deviation, attentive statistics) live
in :mod:`audiossl.nn.pooling`, the one implementation audiossl has; they are re-exported
here under their old names. Utterance-level tasks (speaker, emotion) turn (B, S, D) frames
into one (B, D') vector per item; attentive statistics let the task decide which frames
matter. Every pooling ignores padding (a padded batch gives what each item gives alone),
and an empty item pools to zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.nn.pooling import AttentiveStatsPool, MeanPool, StatsPool
from audiossl.registry import Registry

__all__ = ["POOLINGS", "AttentiveStatsPool", "MeanPool", "PooledNorm", "RunningNorm", "StatsPool", "create_pooling"]


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


class RunningNorm(PooledNorm):
    """:class:`PooledNorm` that standardises with its running statistics in training too.

    Batch statistics depend on which utterances share a batch; the trainer's batches are
    bucketed by length, and where length goes with the class (spoken digits) a batch's own mean
    removes part of what tells the classes apart, and training no longer matches evaluation.
    Here every training batch first updates the running mean and variance (the first batch sets
    them, later ones move them by ``momentum``) and is then standardised with them, without a
    gradient through the statistics. The buffers are BatchNorm's, so a state dict of either class
    loads into the other, and evaluation is the same.
    """

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                values = pooled.detach().float()
                mean = values.mean(dim=0)
                first = int(self.num_batches_tracked) == 0
                rate = 1.0 if first else self.momentum
                self.running_mean.mul_(1.0 - rate).add_(rate * mean)
                if values.shape[0] > 1:
                    self.running_var.mul_(1.0 - rate).add_(rate * values.var(dim=0, unbiased=False))
                self.num_batches_tracked += 1
        return F.batch_norm(pooled, self.running_mean, self.running_var, None, None, False, 0.0, self.eps)


#: Pooling modules by name; each is built as ``cls(dim)`` and has ``.out_dim``.
POOLINGS: Registry[type[nn.Module]] = Registry("pooling")
POOLINGS.register("mean")(MeanPool)
POOLINGS.register("stats")(StatsPool)
POOLINGS.register("attentive")(AttentiveStatsPool)


def create_pooling(name: str, dim: int) -> nn.Module:
    """A pooling module by name (``mean``, ``stats``, ``attentive``) for frames of width ``dim``."""
    return POOLINGS.get(name)(dim)
