"""What the engine trains: a :class:`TrainUnit` turns a batch into a :class:`LossOutput`.

The engine owns everything that is the same for every kind of training (run dir, seeding,
optimizer and schedule, autocast, accumulation, clipping, DDP, checkpoints, logs, signals); a
unit owns what differs: its modules, its data, how a batch becomes a loss, and the few hooks
below. Pretraining (``audiossl.train``), downstream tasks (``audiossl.downstream``) and the
vocoder of the vc plugin are units.

Call order: ``setup`` (after the engine seeded every generator with ``config.seed``), then
``load_state_dict`` when resuming; per optimizer step ``forward`` once per micro-batch drawn
from ``batches``, then ``on_step_end``; ``validate`` every ``valid_every`` steps when
``has_validation``; ``state_dict`` at every checkpoint.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from audiossl.engine.optim import Schedule, parameter_groups
from audiossl.nn.outputs import LossOutput

if TYPE_CHECKING:
    from audiossl.engine.engine import Engine

Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(kw_only=True)
class EngineConfig:
    """How the engine trains a unit (each kind of training fills it from its own config)."""

    max_steps: int
    """Optimizer steps of the run."""
    max_minutes: float | None = None
    """Wall-clock budget of one invocation (set-up included): past it the run stops after the current step
    with a checkpoint (``stopped_by`` = ``"time budget"``), and a resume continues with a fresh budget.
    None = no budget."""
    seed: int = 0
    """Seed of weights, data order and every random draw."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda`` (under torchrun: this process's GPU)."""
    precision: Precision = "fp32"
    """Autocast: ``bf16``, ``fp16`` (with a gradient scaler) or ``fp32`` (none)."""
    num_threads: int | None = None
    """torch intra-op threads; None = torch's default."""
    lr: float = 1.0e-3
    """Peak learning rate of groups that do not set their own."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    eps: float = 1.0e-8
    """AdamW epsilon."""
    weight_decay: float = 0.0
    """Decoupled weight decay of the decayed group (see :func:`~audiossl.engine.optim.no_weight_decay`)."""
    warmup_steps: int = 0
    """Linear warm-up steps to the peak learning rates."""
    schedule: Schedule = "constant"
    """Decay after the warm-up, to ``min_lr_ratio`` at ``max_steps``."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of the peak."""
    grad_clip: float | None = None
    """Clip the global gradient norm; None = no clipping (the norm is still logged)."""
    accumulation_steps: int = 1
    """Micro-batches per optimizer step (per process)."""
    log_every: int = 10
    """Steps between ``train`` records."""
    checkpoint_every: int = 1000
    """Steps between checkpoints; the last step always saves."""
    valid_every: int | None = None
    """Steps between validations (None = ``checkpoint_every``)."""
    keep_last: int = 3
    """Checkpoints kept."""
    keep_best: bool = True
    """Keep ``best.pt`` (lowest validation loss, else lowest loss EMA)."""
    ema_decay: float = 0.98
    """Decay of the logged loss EMA."""
    find_unused_parameters: bool = False
    """DDP: allow parameters that get no gradient in a step."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: ``ddp`` (whole model on every process) or ``fsdp`` (FSDP2: sharded per encoder block)."""
    activation_checkpointing: bool = False
    """Recompute each encoder block in backward instead of keeping its activations."""
    compile: bool = False
    """``torch.compile`` each encoder block (regional compilation)."""
    compile_backend: str = "inductor"
    """The ``torch.compile`` backend (``inductor``; ``aot_eager`` traces without generating code)."""
    dist_timeout_s: float | None = None
    """Seconds a collective waits for the other processes before failing; None = torch's default."""
    tensorboard: bool = True
    """Mirror the log to TensorBoard (RUN_DIR/tensorboard)."""
    label: str = "train"
    """Name of the progress bar."""


class TrainUnit(ABC):
    """Base class of a kind of training; subclasses set ``model`` in :meth:`setup` and implement ``forward``.

    ``model`` is the module whose parameters the engine optimises and, under torchrun, wraps in
    DistributedDataParallel; ``forward`` receives it wrapped (call it for the loss, so gradients
    are synchronised) and reads unwrapped weights from ``self.model``.
    """

    #: Logger of the run's info lines (resume, validation, window summaries).
    logger: logging.Logger = logging.getLogger("audiossl.engine")
    #: What to change after a non-finite loss (the end of the error message).
    nonfinite_hint: str = "Lower the lr, tighten the gradient clipping or use precision fp32/bf16, then --resume"
    model: nn.Module
    engine: Engine

    @abstractmethod
    def setup(self, engine: Engine, restoring: bool) -> None:
        """Build modules (on ``engine.device``) and data; ``restoring``: a checkpoint will be loaded next."""
        raise NotImplementedError

    def parameter_groups(self, config: EngineConfig) -> list[dict[str, Any]]:
        """AdamW groups; the default: ``model``'s parameters with the shared no-decay rule."""
        return parameter_groups(self.model, config.weight_decay)

    @abstractmethod
    def batches(self) -> Iterator[Any]:
        """An endless stream of training items (whatever :meth:`forward` reads), resumable via ``state_dict``."""
        raise NotImplementedError

    @abstractmethod
    def forward(self, model: nn.Module, item: Any, step: int) -> LossOutput:
        """The loss of one micro-batch; wrap the model call in ``self.engine.autocast()``."""
        raise NotImplementedError

    def measure(self, item: Any) -> tuple[int, float]:
        """(utterances, seconds of audio) of an item, for throughput logs."""
        return 0, 0.0

    def describe(self, item: Any) -> str:
        """Where an item comes from, for the message of a non-finite loss."""
        return ""

    @property
    def epoch(self) -> int:
        """The data epoch now (logged)."""
        return 0

    def train(self, mode: bool = True) -> None:
        """Switch the unit's modules to training (or eval) mode."""
        self.model.train(mode)

    def on_step_end(self, step: int) -> None:  # noqa: B027  (an optional hook)
        """Called after every optimizer step with the number of steps done."""

    @property
    def has_validation(self) -> bool:
        return False

    def validate(self, step: int) -> dict[str, float] | None:
        """Sums over this process's validation items: ``items``, ``loss`` and ``parts/<name>``."""
        return None

    def warnings(self, metrics: dict[str, float]) -> list[str]:
        """Health warnings for a window's mean metrics."""
        return []

    def start_record(self) -> dict[str, Any]:
        """Extra fields of the log's start/resume event."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The unit's entries of a checkpoint (weights, data position, config), at its top level."""
        return {}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:  # noqa: B027  (an optional hook)
        """Restore what :meth:`state_dict` saved (``state`` is the whole checkpoint read from ``path``)."""

    def rank_state(self) -> dict[str, Any] | None:
        """This process's own entries of a checkpoint (e.g. a streaming loader's position), or None.

        :meth:`state_dict` is taken on the main process only; what differs between processes goes
        here: the engine gathers every process's ``rank_state`` into the checkpoint's
        ``rank_states`` (plain types and tensors only) and hands each its own back on resume.
        """
        return None

    def load_rank_state(self, state: dict[str, Any] | None, path: Path) -> None:  # noqa: B027  (an optional hook)
        """Restore this process's :meth:`rank_state` (called after :meth:`load_state_dict`).

        ``state`` is None when the checkpoint was written by another number of processes (or
        before rank states existed): the unit decides whether it can go on from the main state.
        """
