"""AdamW with decay only on weight matrices, and a warm-up + cosine/linear/constant schedule.

The rules live in :mod:`audiossl.engine.optim` (shared by every kind of training); this module
reads them from a pretraining :class:`~audiossl.train.config.OptimConfig`.
"""

from __future__ import annotations

import torch
from torch import nn

from audiossl.engine.optim import load_scheduler_state, parameter_groups, scheduler_state
from audiossl.engine.optim import lr_factor as _lr_factor
from audiossl.train.config import OptimConfig

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "load_scheduler_state",
    "lr_factor",
    "parameter_groups",
    "scheduler_state",
]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters with ``config``'s lr, betas, eps and weight decay."""
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay), lr=config.lr, betas=tuple(config.betas), eps=config.eps
    )


def lr_factor(step: int, config: OptimConfig, max_steps: int) -> float:
    """Multiplier of the peak lr for the update made at optimizer step ``step`` (0-based)."""
    return _lr_factor(
        step,
        warmup_steps=config.warmup_for(max_steps),
        schedule=config.schedule,
        max_steps=max_steps,
        min_lr_ratio=config.min_lr_ratio,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_factor`; call ``step()`` once after every optimizer step."""

    def factor(step: int) -> float:
        return lr_factor(step, config, max_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
