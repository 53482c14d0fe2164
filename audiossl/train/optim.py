"""AdamW with decay only on weight matrices, and a warm-up + cosine/linear/constant schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from audiossl.train.config import OptimConfig


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight matrices (decayed) and the rest (not decayed).

    Not decayed: 1-D parameters (biases, norm scales; decaying them pulls them towards zero for
    no regularising benefit, the usual BERT/ViT/wav2vec 2.0 practice) and parameters a module
    flags with ``_no_weight_decay = True`` (Mamba's A_log and D).
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or getattr(parameter, "_no_weight_decay", False)
        (no_decay if exempt else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters with ``config``'s lr, betas, eps and weight decay."""
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay), lr=config.lr, betas=tuple(config.betas), eps=config.eps
    )


def lr_factor(step: int, config: OptimConfig, max_steps: int) -> float:
    """Multiplier of the peak lr for the update made at optimizer step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps`` (so the first update is not wasted at lr 0), then the
    decay from 1 at the end of the warm-up to ``min_lr_ratio`` at ``max_steps``.
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    progress = min(max((step - warmup) / max(max_steps - warmup, 1), 0.0), 1.0)
    floor = config.min_lr_ratio
    if config.schedule == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_factor`; call ``step()`` once after every optimizer step."""

    def factor(step: int) -> float:
        return lr_factor(step, config, max_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR) -> dict:
    """The scheduler's position only (the schedule itself comes from the config), safe for ``weights_only``."""
    state = scheduler.state_dict()
    state.pop("lr_lambdas", None)
    return state


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Restore what :func:`scheduler_state` saved; the lr lambdas stay those of the current config."""
    state = dict(state)
    state["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)
    scheduler.load_state_dict(state)
