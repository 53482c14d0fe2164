"""A wall-clock budget for one training invocation (``run.max_minutes``) and warm-up sanity checks.

The budget counts from the engine's construction (data statistics, model set-up and loading a
checkpoint included, since that is the user's wall clock) to the end of an optimizer step. When
it is spent the engine stops after that step like on SIGTERM: it writes a checkpoint and returns
with ``stopped_by`` = :data:`TIME_BUDGET`; ``--resume`` continues the run exactly, with a fresh
budget of the same length (the budget is per invocation, like a batch system's time limit).

The lr schedule runs to ``max_steps``, not to the budget: :func:`horizon_note` says, once the step
time is known, when the budget will end the run long before the schedule has decayed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: ``stopped_by`` of a run that spent its ``max_minutes`` (the CLI exits 0 on it: the budget is the plan).
TIME_BUDGET = "time budget"

Clock = Callable[[], float]


class TimeBudget:
    """Whether ``max_minutes`` of wall-clock time (per ``clock``, seconds) have passed since construction.

    ``max_minutes`` None is no budget: :meth:`spent` is always False.
    """

    def __init__(self, max_minutes: float | None, clock: Clock = time.monotonic):
        if max_minutes is not None and not max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0 or None, got {max_minutes}")
        self.max_minutes = max_minutes
        self.clock = clock
        self.start = clock()

    @property
    def elapsed_minutes(self) -> float:
        """Minutes since the budget started."""
        return (self.clock() - self.start) / 60.0

    def spent(self) -> bool:
        """Whether the budget is used up (never, without a budget)."""
        return self.max_minutes is not None and self.elapsed_minutes >= self.max_minutes

    def remaining_steps(self, seconds_per_step: float) -> int | None:
        """Steps that fit in the rest of the budget at ``seconds_per_step`` (None without a budget)."""
        if self.max_minutes is None or not seconds_per_step > 0:
            return None
        left = max(self.max_minutes - self.elapsed_minutes, 0.0) * 60.0
        return int(math.floor(left / seconds_per_step))

    def describe(self) -> str:
        """``run.max_minutes=M (E wall-minutes in this invocation)`` for logs."""
        return f"run.max_minutes={self.max_minutes:g} ({self.elapsed_minutes:.1f} wall-minutes in this invocation)"


def horizon_note(step: int, max_steps: int, fits: int | None, schedule: str) -> str | None:
    """A warning when the budget ends the run well before the decaying schedule reaches ``max_steps``.

    ``fits``: steps that fit in the rest of the budget (:meth:`TimeBudget.remaining_steps`).
    None when the budget covers at least 90% of the remaining steps, or the schedule is constant.
    """
    if fits is None or schedule == "constant":
        return None
    left = max_steps - step
    if fits >= 0.9 * left:
        return None
    reach = step + fits
    return (
        f"the time budget will stop the run near step {reach} of {max_steps}: the {schedule} lr schedule "
        f"(which decays until run.max_steps) will still be at {100 * reach / max_steps:.0f}% of its length. "
        f"For a complete schedule within the budget, set run.max_steps to about {reach}"
    )


def warmup_note(warmup_steps: int, max_steps: int) -> str | None:
    """A warning when the warm-up takes half of the run or more (the lr barely peaks, then never decays)."""
    if warmup_steps * 2 < max_steps:
        return None
    return (
        f"the lr warm-up ({warmup_steps} steps) is {100 * warmup_steps / max(max_steps, 1):.0f}% of the run "
        f"({max_steps} steps): the lr will barely (or never) reach its peak. Use optim.warmup_ratio "
        "(a fraction of run.max_steps) or a smaller optim.warmup_steps"
    )
