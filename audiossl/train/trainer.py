"""The pretraining run: the :class:`~audiossl.train.unit.PretrainUnit` on the training engine.

One :class:`Trainer` runs one (encoder, objective) pair described by a
:class:`~audiossl.train.config.PretrainConfig` on one or more data dirs, writing everything to
``RUN_DIR``: ``config.yaml``, ``train.jsonl``, ``tensorboard/``, ``ckpt-<step>.pt`` (last N),
``best.pt`` and ``loss.png``. Under torchrun the same code runs DistributedDataParallel with
every process reading its own shard of the batches. The loop, checkpoints, exact resume,
signals and NaN stops are the engine's (:mod:`audiossl.engine`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiossl.data.wav_scp import allowing_pipes
from audiossl.engine import STOP_EXIT_CODES, Engine, NonFiniteLossError
from audiossl.train.config import PretrainConfig
from audiossl.train.unit import PretrainUnit, engine_config

__all__ = ["STOP_EXIT_CODES", "NonFiniteLossError", "PretrainResult", "Trainer", "pretrain"]


@dataclass
class PretrainResult:
    """How a run ended: its last step, why it stopped early (None when it finished), its checkpoints."""

    run_dir: Path
    step: int
    stopped_by: str | None
    checkpoint: Path | None
    best: Path | None
    loss_ema: float


StepCallback = Callable[["Trainer"], None]


class Trainer(Engine):
    """Pretrain ``config``'s encoder with its objective on ``data_dirs``, into ``run_dir``.

    ``resume=True`` continues from the newest checkpoint of ``run_dir`` (when there is none yet,
    the run stopped before its first one: it starts from step 0 and logs so); without it, a
    ``run_dir`` that already has checkpoints is an error, so a finished run is never overwritten
    by accident. ``callbacks`` are called after every optimizer step with the trainer (tests use
    them to interrupt a run).
    """

    def __init__(
        self,
        config: PretrainConfig,
        data_dirs: Sequence[str | Path],
        run_dir: str | Path,
        *,
        resume: bool = False,
        callbacks: Sequence[StepCallback] = (),
    ):
        self.pretrain_config = config
        self.data_dirs = [str(Path(d)) for d in data_dirs]
        unit = PretrainUnit(config, self.data_dirs, run_dir)
        super().__init__(unit, engine_config(config), run_dir, resume=resume, callbacks=callbacks)

    @property
    def objective(self):
        """The objective with its encoder (unwrapped)."""
        return self.unit.objective

    @property
    def inputs(self):
        return self.unit.inputs

    @property
    def data(self):
        return self.unit.data

    @property
    def valid(self):
        return self.unit.valid

    def train(self) -> PretrainResult:
        """Train until ``run.max_steps`` or a stop request; return how it ended."""
        result = super().train()
        return PretrainResult(
            result.run_dir, result.step, result.stopped_by, result.checkpoint, result.best, result.loss_ema
        )


def pretrain(
    config: PretrainConfig,
    data_dirs: Sequence[str | Path],
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Sequence[StepCallback] = (),
) -> PretrainResult:
    """Run (or with ``resume`` continue) a pretraining run; the library function behind ``audiossl pretrain``.

    ``data.allow_pipes: true`` allows wav.scp pipe commands for the whole run (its statistics, data
    loaders and their workers); otherwise the process policy decides (:mod:`audiossl.data.wav_scp`).
    """
    with allowing_pipes(config.data.allow_pipes):
        trainer = Trainer(config, data_dirs, run_dir, resume=resume, callbacks=callbacks)
        try:
            return trainer.train()
        finally:
            trainer.close()
