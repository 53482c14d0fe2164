"""Pretraining as a unit of the training engine: data -> front-end -> objective -> LossOutput.

The engine (:mod:`audiossl.engine`) runs the loop; this unit builds the (encoder, objective)
pair of a :class:`~audiossl.train.config.PretrainConfig` with its data and input pipeline,
turns a batch into the objective's loss and keeps what a pretraining checkpoint holds besides
the engine's state (weights, input statistics, data position, config, encoder description).

Masks and augmentation of a batch are drawn from generators seeded by (seed, epoch, global
batch index), so they are the same for one process with accumulation and for DDP, and after a
resume; everything else random comes from the global random states, which the engine saves.

Objectives with a second, text modality (``speecht5`` with ``--text``) expose ``text_cycle``
(speech batches, text batches per cycle), ``sentences`` and ``text_inputs(indices, generator)``:
the unit then interleaves :class:`TextItem` s between the data batches. Which item comes next is
a function of the items drawn so far (saved in the checkpoint), the sentences of text batch
``k`` are a function of (seed, k, rank) (:class:`~audiossl.data.text.TextBatches`) and its
infilling noise is seeded by (seed, k): a resumed run draws exactly the same items, and every
DDP process draws the same kind of item at the same time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiossl.config import to_dict
from audiossl.data.dataset import Batch
from audiossl.data.text import TextBatches
from audiossl.embed import load as load_model
from audiossl.engine import Engine, EngineConfig, TrainUnit
from audiossl.engine.logging import health_warnings, loss_values
from audiossl.errors import ConfigError
from audiossl.fileio import atomic_write
from audiossl.nn.outputs import LossOutput
from audiossl.objectives.distill import set_teacher_loader
from audiossl.train.config import PretrainConfig, dump_config, plain
from audiossl.train.model import build_model

logger = logging.getLogger("audiossl.train")

# Distillation teachers may be any model audiossl.load reads (imported checkpoints included); the
# objectives room alone can read audiossl checkpoints only.
set_teacher_loader(lambda path: load_model(path, device="cpu"))


def batch_seeds(*entropy: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (masks, augmentation) from non-negative integers."""
    first, second = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, dtype=np.uint64)
    return int(first >> np.uint64(1)), int(second >> np.uint64(1))


def engine_config(config: PretrainConfig) -> EngineConfig:
    """The engine settings of a pretraining config (its ``optim`` and ``run`` sections)."""
    optim, run = config.optim, config.run
    return EngineConfig(
        max_steps=run.max_steps,
        max_minutes=run.max_minutes,
        seed=run.seed,
        device=run.device,
        precision=run.precision,
        num_threads=run.num_threads,
        lr=optim.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        warmup_steps=optim.warmup_for(run.max_steps),
        schedule=optim.schedule,
        min_lr_ratio=optim.min_lr_ratio,
        grad_clip=optim.grad_clip,
        accumulation_steps=optim.accumulation_steps,
        log_every=run.log_every,
        checkpoint_every=run.checkpoint_every,
        valid_every=run.valid_every,
        keep_last=run.keep_last,
        keep_best=run.keep_best,
        ema_decay=run.ema_decay,
        find_unused_parameters=run.find_unused_parameters,
        distributed=run.distributed,
        activation_checkpointing=run.activation_checkpointing,
        compile=run.compile,
        compile_backend=run.compile_backend,
        dist_timeout_s=run.dist_timeout_s,
        tensorboard=run.tensorboard,
        label="pretrain",
    )


#: The epoch entropy of text batch seeds (speech batches use the data epoch there).
TEXT_SEED_TAG = 2**31 - 2


@dataclass(frozen=True)
class TextItem:
    """A text batch among the data batches: global text batch ``index`` (see the module doc)."""

    index: int


def is_text_slot(position: int, cycle: tuple[int, int]) -> bool:
    """Whether item ``position`` (0-based, all kinds counted) of an alternation ``cycle`` is a text batch."""
    speech, text = cycle
    return position % (speech + text) >= speech


def text_index(position: int, cycle: tuple[int, int]) -> int:
    """The global text batch number of text item ``position``."""
    speech, text = cycle
    return (position // (speech + text)) * text + position % (speech + text) - speech


class PretrainUnit(TrainUnit):
    """One (encoder, objective) pair of ``config`` on ``data_dirs``; items are (batch, epoch, index)."""

    logger = logger
    nonfinite_hint = "Lower optim.lr, tighten optim.grad_clip or use precision fp32/bf16, then --resume"

    def __init__(self, config: PretrainConfig, data_dirs: Sequence[str | Path], run_dir: str | Path):
        self.config = config
        self.data_dirs = [str(Path(d)) for d in data_dirs]
        self.run_dir = Path(run_dir)

    def setup(self, engine: Engine, restoring: bool) -> None:
        built = build_model(self.config, self.data_dirs, self.run_dir, engine.dist, restoring=restoring)
        self.data, self.valid, self.inputs = built.data, built.valid, built.inputs
        self.objective, self.encoder_config = built.objective, built.encoder_config
        self.device = engine.device
        self.inputs.to(self.device)
        self.objective.to(self.device)
        self.model = self.objective
        self.position = 0  # items drawn so far (data and text batches)
        self.text_cycle = getattr(self.objective, "text_cycle", None)
        self.text_batches = None
        if self.text_cycle is not None:
            if engine.dist.world_size > 1 and not self.config.run.find_unused_parameters:
                raise ConfigError(
                    "alternating speech and text batches leaves some parameters without gradient in a step: "
                    "set run.find_unused_parameters: true for DDP"
                )
            self.text_batches = TextBatches(
                len(self.objective.sentences),
                self.objective.config.text_batch_size,
                self.config.run.seed,
                engine.dist.rank,
                engine.dist.world_size,
            )

    # ------------------------------------------------------------------------- steps

    def batches(self) -> Iterator[tuple[Batch, int, int] | TextItem]:
        if self.text_cycle is None:
            return iter(self.data)
        return self._alternating(iter(self.data))

    def _alternating(self, speech: Iterator[tuple[Batch, int, int]]) -> Iterator[tuple[Batch, int, int] | TextItem]:
        """Data batches with text batches in between, continuing from ``self.position``."""
        while True:
            position = self.position
            self.position += 1
            if is_text_slot(position, self.text_cycle):
                yield TextItem(text_index(position, self.text_cycle))
            else:
                yield next(speech)

    def forward(self, model: nn.Module, item: tuple[Batch, int, int] | TextItem, step: int) -> LossOutput:
        """Front-end, then the objective under autocast; masks and augmentation seeded per batch."""
        if isinstance(item, TextItem):
            return self._text_loss(model, item, step)
        batch, epoch, index = item
        mask_seed, augment_seed = batch_seeds(self.config.run.seed, epoch, index)
        return self._loss(model, batch, step, mask_seed, torch.Generator().manual_seed(augment_seed))

    def _loss(
        self, model: nn.Module, batch: Batch, step: int, mask_seed: int, augment: torch.Generator | None
    ) -> LossOutput:
        mask_generator = torch.Generator(device=self.device).manual_seed(mask_seed)
        batch = batch.to(self.device, non_blocking=True)
        if augment is None:
            kwargs = self.objective.batch_inputs(batch, self.inputs)
        else:
            kwargs = self.objective.batch_inputs(batch, self.inputs, generator=augment)
        with self.engine.autocast():
            return model(**kwargs, step=step, generator=mask_generator)

    def _text_loss(self, model: nn.Module, item: TextItem, step: int) -> LossOutput:
        """A text batch: its sentences and infilling noise seeded by (seed, index), masks by the mask seed."""
        noise_seed, mask_seed = batch_seeds(self.config.run.seed, TEXT_SEED_TAG, item.index)
        indices = self.text_batches.indices(item.index)
        inputs = self.objective.text_inputs(indices, torch.Generator().manual_seed(noise_seed)).to(self.device)
        kwargs = {f.name: getattr(inputs, f.name) for f in fields(inputs)}
        mask_generator = torch.Generator(device=self.device).manual_seed(mask_seed)
        with self.engine.autocast():
            return model(**kwargs, step=step, generator=mask_generator)

    def measure(self, item: tuple[Batch, int, int] | TextItem) -> tuple[int, float]:
        if isinstance(item, TextItem):
            return self.objective.config.text_batch_size, 0.0
        batch = item[0]
        return len(batch.ids), float(batch.lengths.sum()) / self.config.data.sample_rate

    def describe(self, item: tuple[Batch, int, int] | TextItem) -> str:
        if isinstance(item, TextItem):
            return f"text batch {item.index}"
        return f"epoch {item[1]}, batch {item[2]}"

    @property
    def epoch(self) -> int:
        return self.data.epoch

    def train(self, mode: bool = True) -> None:
        self.objective.train(mode)
        self.inputs.train(mode)

    def on_step_end(self, step: int) -> None:
        self.objective.on_step_end(step)

    # ------------------------------------------------------------------------- validation, logs

    @property
    def has_validation(self) -> bool:
        return self.valid is not None

    def validate(self, step: int) -> dict[str, float]:
        """Sums per utterance over this process's validation batches (fixed masks per batch)."""
        sums: dict[str, float] = defaultdict(float)
        for batch, index in self.valid.epoch_batches(self.config.run.valid_max_batches):
            mask_seed, _ = batch_seeds(self.config.run.seed, 2**31 - 1, index)  # fixed masks, unlike training
            out = self._loss(self.objective, batch, step, mask_seed, None)
            items = len(batch.ids)
            for name, value in loss_values(out).items():
                sums[name] += value * items
            sums["items"] += items
        return dict(sums)

    def warnings(self, metrics: dict[str, float]) -> list[str]:
        return health_warnings(metrics, self.config.run.collapse_perplexity, self.config.run.max_length_drift)

    def start_record(self) -> dict[str, Any]:
        """Write ``config.yaml`` (main process, once the run is set up); the start event names the data."""
        with atomic_write(self.run_dir / "config.yaml") as handle:
            handle.write(dump_config(self.config))
        return {"data": self.data_dirs}

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.data.epoch,
            "model": self.objective.state_dict(),
            "inputs": self.inputs.state_dict(),
            "data": self.data.state_dict(),
            "config": plain(to_dict(self.config)),
            "encoder": {"family": self.config.encoder.family, "config": plain(to_dict(self.encoder_config))},
            "data_dirs": list(self.data_dirs),
            "alternation": {"position": self.position},
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.objective.load_state_dict(state["model"])
            self.inputs.load_state_dict(state["inputs"])
        except RuntimeError as error:
            raise ConfigError(f"the checkpoint does not fit this config's model: {error}", path) from None
        self.position = int(state.get("alternation", {}).get("position", 0))
        try:
            self.data.load_state_dict(state["data"])
        except ValueError as error:
            raise ConfigError(f"cannot resume this checkpoint: {error}", path) from None
        changed = differences(state["config"], plain(to_dict(self.config)))
        if changed:
            logger.warning("config differs from the checkpoint's in: %s", ", ".join(changed))

    def rank_state(self) -> dict[str, Any]:
        """This process's data position (a streaming backend's differs from rank to rank)."""
        return {"data": self.data.state_dict()}

    def load_rank_state(self, state: dict[str, Any] | None, path: Path) -> None:
        """Continue this process's own data stream (None: the main process's position stays)."""
        if state is None:
            return
        try:
            self.data.load_state_dict(state["data"])
        except ValueError as error:
            raise ConfigError(f"cannot resume this checkpoint: {error}", path) from None


def differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [prefix.rstrip(".")]
