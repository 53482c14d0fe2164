"""A learned softmax-weighted sum of an encoder's layers, and mean pooling over valid frames.

s3prl's ``Featurizer`` (Yang et al., "SUPERB", 2021) showed that a frozen SSL encoder is best
probed through a learned convex combination of all its hidden layers: different layers carry
different information (speaker in lower layers, content higher up) and the task picks. This
module is that combination; pooling and heads are separate so a frame-level task (ASR) and
an utterance-level one (speaker, emotion) share it. ``mean_pool`` is
:func:`audiossl.nn.pooling.masked_mean` under its old name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.nn.pooling import masked_mean as mean_pool  # kept: the old public name of masked_mean

__all__ = ["WeightedLayerSum", "mean_pool"]


class WeightedLayerSum(nn.Module):
    """``sum_l softmax(w)_l * norm(h_l)`` over L layers of (B, S, D) -> (B, S, D).

    ``normalize`` applies a parameter-free layer norm to every layer first (s3prl's
    ``layer_norm`` option), so layers of very different scales compete on equal terms. The
    weights start equal (a plain average).
    """

    def __init__(self, num_layers: int, normalize: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = num_layers
        self.normalize = normalize
        self.logits = nn.Parameter(torch.zeros(num_layers))

    @property
    def weights(self) -> torch.Tensor:
        """The layer weights (L,), summing to one."""
        return self.logits.softmax(dim=0)

    def forward(self, layers: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``layers``: L tensors (B, S, D), or one (L, B, S, D) tensor -> (B, S, D)."""
        stacked = layers if isinstance(layers, torch.Tensor) else torch.stack(list(layers))  # (L, B, S, D)
        if stacked.shape[0] != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers, got {stacked.shape[0]}")
        if self.normalize:
            stacked = F.layer_norm(stacked, stacked.shape[-1:])
        weights = self.weights.to(stacked.dtype).view(-1, *([1] * (stacked.dim() - 1)))  # (L, 1, 1, 1)
        return (weights * stacked).sum(dim=0)
