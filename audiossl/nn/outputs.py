"""What a training unit returns for one batch: :class:`LossOutput`, and :func:`scalar_metrics`.

Objectives (pretraining), downstream tasks and the vocoder all return a ``LossOutput``; the
training engine back-propagates ``total`` and logs ``parts`` and ``metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


@dataclass
class LossOutput:
    """What an objective (or any training unit) returns for one batch.

    ``total``: scalar tensor to back-propagate.
    ``parts``: named scalar tensors that make up ``total`` (unweighted), e.g. ``contrastive``,
    ``diversity``.
    ``metrics``: health metrics as Python floats (codebook perplexity, Gumbel temperature,
    contrastive accuracy, ...), for logs and collapse warnings.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def scalar_metrics(values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Detach tensors to floats in one device transfer (one sync per step, not one per metric)."""
    names = [name for name, value in values.items() if isinstance(value, torch.Tensor)]
    out = {name: float(value) for name, value in values.items() if not isinstance(value, torch.Tensor)}
    if names:
        stacked = torch.stack([values[name].detach().float().reshape(()) for name in names]).cpu().tolist()
        out.update(zip(names, stacked, strict=True))
    return out
