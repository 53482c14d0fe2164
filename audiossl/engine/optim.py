"""AdamW parameter groups with one no-weight-decay rule, and the warm-up + decay learning-rate schedule.

Every kind of training (pretraining, downstream heads and fine-tuning, the vocoder) builds its
groups with :func:`parameter_groups`, so the set of parameters exempt from weight decay is the
same wherever a parameter is trained.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

Schedule = Literal["constant", "linear", "cosine"]


def no_weight_decay(parameter: nn.Parameter) -> bool:
    """Whether ``parameter`` is exempt from weight decay.

    Exempt: 1-D parameters (biases, norm scales; decaying them pulls them towards zero for no
    regularising benefit, the usual BERT/ViT/wav2vec 2.0 practice) and parameters a module flags
    with ``_no_weight_decay = True`` (Mamba's A_log and D).
    """
    return parameter.ndim < 2 or bool(getattr(parameter, "_no_weight_decay", False))


def parameter_groups(
    parameters: nn.Module | Iterable[nn.Parameter], weight_decay: float, **options: Any
) -> list[dict[str, Any]]:
    """Two AdamW groups of the trainable ``parameters``: decayed and exempt (:func:`no_weight_decay`).

    ``options`` (e.g. ``lr``) go into both groups. Empty groups are left out.
    """
    if isinstance(parameters, nn.Module):
        parameters = parameters.parameters()
    decay, exempt = [], []
    for parameter in parameters:
        if parameter.requires_grad:
            (exempt if no_weight_decay(parameter) else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay, **options},
        {"params": exempt, "weight_decay": 0.0, **options},
    ]
    return [group for group in groups if group["params"]]


def lr_factor(step: int, *, warmup_steps: int, schedule: Schedule, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr for the update made at optimizer step ``step`` (0-based).

    Warm-up: ``(step + 1) / warmup_steps`` (so the first update is not wasted at lr 0), then the
    decay from 1 at the end of the warm-up to ``min_lr_ratio`` at ``max_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(max((step - warmup_steps) / max(max_steps - warmup_steps, 1), 0.0), 1.0)
    if schedule == "linear":
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    schedule: Schedule,
    max_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following :func:`lr_factor`; call ``step()`` once after every optimizer step."""

    def factor(step: int) -> float:
        return lr_factor(
            step, warmup_steps=warmup_steps, schedule=schedule, max_steps=max_steps, min_lr_ratio=min_lr_ratio
        )

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
