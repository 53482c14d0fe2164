"""A downstream task as a unit of the training engine: upstream -> head -> the task's loss.

The engine (:mod:`audiossl.engine`) runs the loop, so a downstream head (and, when
fine-tuning, the encoder) trains with the same optimizer groups, schedule, autocast,
accumulation, DDP, checkpoints and logs as pretraining. A downstream checkpoint keeps its
keys: ``kind``, ``head``, ``upstream`` (the layer weights, plus the encoder when it changed),
``sampler``, ``task`` and ``config``, besides the engine's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from audiossl.config import to_dict
from audiossl.data.dataset import AudioDataset, Batch, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.downstream.cache import FeatureCache
from audiossl.downstream.task import DownstreamTask, TaskState, eval_batches
from audiossl.downstream.upstream import Upstream
from audiossl.engine import Engine, EngineConfig, TrainUnit, parameter_groups
from audiossl.fileio import CHECKPOINT_FORMAT
from audiossl.nn.outputs import LossOutput

if TYPE_CHECKING:
    from audiossl.downstream.trainer import DownstreamConfig

logger = logging.getLogger("audiossl.downstream.trainer")


class TaskModule(nn.Module):
    """Upstream + head + the task's loss in one module, so DDP sees every trained parameter in one call."""

    def __init__(self, task: DownstreamTask, upstream: Upstream, head: nn.Module, state: TaskState):
        super().__init__()
        self.task = task
        self.upstream = upstream
        self.head = head
        self.state = state

        self.cache: FeatureCache | None = None

    def forward(self, batch: Batch) -> LossOutput:
        upstream = self.upstream
        if self.cache is None or not upstream.encoder_frozen:
            hidden, lengths = upstream(batch.waveforms, batch.lengths)  # (B, S, D), (B,)
        else:
            found = self.cache.get(batch.ids, upstream.device)
            if found is None:
                with torch.no_grad():
                    layers, lengths = upstream.layers(batch.waveforms, batch.lengths)  # L x (B, S, D)
                self.cache.put(batch.ids, layers, lengths)
            else:
                layers, lengths = found
            hidden = layers[0] if upstream.featurizer is None else upstream.featurizer(layers)  # (B, S, D)
        return self.task.loss(self.head, hidden, lengths, batch, self.state)


def downstream_parameter_groups(
    head: nn.Module, upstream: Upstream, *, lr: float, upstream_lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: head and encoder each split by the shared no-decay rule; layer weights never decayed."""
    groups = parameter_groups(head, weight_decay, lr=lr)
    groups += parameter_groups(upstream.encoder_parameters(), weight_decay, lr=upstream_lr)
    featurizer = upstream.featurizer_parameters()
    if featurizer:
        groups.append({"params": featurizer, "lr": lr, "weight_decay": 0.0})
    return groups


class Batches:
    """An endless, resumable stream of this process's training batches: epoch and batches finished in it."""

    def __init__(self, dataset: AudioDataset, config: DownstreamConfig, rank: int = 0, world_size: int = 1):
        self.dataset = dataset
        self.sampler = BucketBatchSampler(
            dataset.durations, config.batch_seconds, seed=config.seed, rank=rank, world_size=world_size
        )
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed),
        )
        self.epoch = 0
        self.batches_done = 0

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict(batches_done=self.batches_done)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self.epoch, self.batches_done = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[Batch]:
        while True:
            self.sampler.set_epoch(self.epoch)
            self.dataset.set_epoch(self.epoch)
            for batch in self.loader:
                self.batches_done += 1
                yield batch
            self.epoch += 1
            self.batches_done = 0


def engine_config(config: DownstreamConfig, task: DownstreamTask) -> EngineConfig:
    """The engine settings of a downstream config."""
    return EngineConfig(
        max_steps=config.max_steps,
        seed=config.seed,
        device=config.device,
        precision=config.precision,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        schedule=config.schedule,
        grad_clip=config.grad_clip,
        accumulation_steps=config.accumulation_steps,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        valid_every=config.eval_every,
        keep_last=config.keep_last,
        keep_best=False,
        # the encoder gets no gradient during freeze_steps: DDP must not wait for it
        find_unused_parameters=config.mode == "finetune" and config.freeze_steps > 0,
        tensorboard=config.tensorboard,
        label=f"train {task.name}",
    )


class DownstreamUnit(TrainUnit):
    """``task``'s head on ``upstream`` with ``train_dir``; items are batches."""

    logger = logger

    def __init__(
        self,
        task: DownstreamTask,
        upstream: Upstream,
        state: TaskState,
        train_dir: Path,
        config: DownstreamConfig,
        valid_dir: Path | None = None,
        clock_start: float | None = None,
    ):
        self.task, self.upstream, self.state = task, upstream, state
        self.train_dir, self.valid_dir = Path(train_dir), valid_dir
        self.settings = config
        self.clock_start = time.monotonic() if clock_start is None else clock_start
        # early stopping: the best dev evaluation so far (weights on the CPU) and evaluations since
        self.best_step: int | None = None
        self.best_score: float | None = None
        self.best_loss = math.inf
        self.best_weights: dict[str, Any] | None = None
        self.since_best = 0

    def setup(self, engine: Engine, restoring: bool) -> None:
        config, task, upstream = self.settings, self.task, self.upstream
        self.head = task.make_head(upstream.dim, self.state).to(engine.device)
        upstream.to(engine.device)
        self.device = engine.device
        crop = config.max_utt_seconds if task.level == "utterance" else None
        dataset = AudioDataset(
            self.train_dir,
            sample_rate=upstream.sample_rate,
            labels=task.labels,
            max_seconds=crop,
            crop_seed=config.seed,
        )
        self.data = Batches(dataset, config, engine.dist.rank, engine.dist.world_size)
        self.model = TaskModule(task, upstream, self.head, self.state)
        if config.cache_gb > 0 and config.mode == "frozen" and crop is None:
            self.model.cache = FeatureCache(config.cache_gb * 2**30)

    def parameter_groups(self, config: EngineConfig) -> list[dict[str, Any]]:
        return downstream_parameter_groups(
            self.head,
            self.upstream,
            lr=self.settings.lr,
            upstream_lr=self.settings.upstream_lr,
            weight_decay=self.settings.weight_decay,
        )

    def batches(self) -> Iterator[Batch]:
        return iter(self.data)

    def forward(self, model: nn.Module, item: Batch, step: int) -> LossOutput:
        self.upstream.set_step(step)
        with self.engine.autocast():
            return model(item.to(self.device))

    def measure(self, item: Batch) -> tuple[int, float]:
        return len(item.ids), float(item.lengths.sum()) / self.upstream.sample_rate

    def describe(self, item: Batch) -> str:
        return f"utterances {', '.join(item.ids[:5])}"

    @property
    def epoch(self) -> int:
        return self.data.epoch

    def train(self, mode: bool = True) -> None:
        self.head.train(mode)
        self.upstream.train(mode)

    @property
    def has_validation(self) -> bool:
        return self.valid_dir is not None

    def validate(self, step: int) -> dict[str, float]:
        """The task's dev metrics (logged by the engine under ``parts``); tracks the best step for early stopping.

        A better dev metric (ties: a lower dev loss) keeps a copy of the head and layer weights;
        ``patience`` evaluations in a row without one stop the run when early stopping is on.
        """
        task = self.task
        metrics = task.dev_metrics(self.head, self.upstream, self.valid_dir, self.state, self.settings.batch_seconds)
        if task.dev_metric not in metrics or "loss" not in metrics:
            raise KeyError(f"task {task.name!r}: dev_metrics must return 'loss' and {task.dev_metric!r}")
        score, loss = float(metrics[task.dev_metric]), float(metrics["loss"])
        if self.settings.early_stopping:
            sign = 1.0 if task.dev_higher_is_better else -1.0
            better = self.best_score is None or (sign * score, -loss) > (sign * self.best_score, -self.best_loss)
            if better and math.isfinite(score):
                self.best_step, self.best_score, self.best_loss, self.since_best = step, score, loss, 0
                self.best_weights = {
                    "head": {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()},
                    "upstream": {k: v.detach().cpu().clone() for k, v in self.upstream.checkpoint_state().items()},
                }
            else:
                self.since_best += 1
            self.logger.info(
                "step %d dev %s %.4f (best %.4f at step %d)",
                step,
                task.dev_metric,
                score,
                self.best_score,
                self.best_step,
            )
            if self.since_best >= self.settings.patience:
                self.engine.request_stop(
                    f"early stopping (no better dev {task.dev_metric} in {self.since_best} evaluations; "
                    f"best {self.best_score:.4f} at step {self.best_step})"
                )
        extra = {name: value for name, value in metrics.items() if name != "loss"}
        return {"loss": loss, "items": 1.0, **extra}

    def on_step_end(self, step: int) -> None:
        """Stop when the wall-clock budget (``budget_minutes``) is spent; the best checkpoint is kept."""
        budget = self.settings.budget_minutes
        if budget is None or self.engine.stop.reason is not None:
            return
        elapsed = self.engine.elapsed_before + time.monotonic() - self.clock_start
        if elapsed >= 60.0 * budget:
            self.engine.request_stop(f"the budget of {budget:g} minutes ({elapsed / 60:.1f} min spent)")

    def write_best(self, run_dir: Path) -> Path | None:
        """Write ``RUN_DIR/best.pt`` (head and upstream weights of the best dev evaluation); None without one."""
        if self.best_weights is None:
            return None
        from audiossl.engine import BEST_NAME, save_checkpoint

        state = {
            "format": CHECKPOINT_FORMAT,
            "kind": "downstream",
            "step": self.best_step,
            "dev": {"metric": self.task.dev_metric, "score": self.best_score, "loss": self.best_loss},
            **self.best_weights,
            "task": self.task.name,
            "config": to_dict(self.settings),
        }
        path = save_checkpoint(state, Path(run_dir) / BEST_NAME)
        self.logger.info(
            "best dev %s %.4f at step %d -> %s", self.task.dev_metric, self.best_score, self.best_step, path
        )
        return path

    def start_record(self) -> dict[str, Any]:
        return {"time": time.time()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "downstream",
            "head": self.head.state_dict(),
            "upstream": self.upstream.checkpoint_state(),
            "sampler": self.data.state_dict(),
            "task": self.task.name,
            "config": to_dict(self.settings),
            "early_stopping": {
                "best_step": self.best_step,
                "best_score": self.best_score,
                "best_loss": self.best_loss,
                "since_best": self.since_best,
                "weights": self.best_weights,
            },
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        self.head.load_state_dict(state["head"])
        self.upstream.load_checkpoint_state(state["upstream"])
        self.data.load_state_dict(state["sampler"])
        saved = state.get("early_stopping")
        if saved:
            self.best_step, self.best_score = saved["best_step"], saved["best_score"]
            self.best_loss, self.since_best = float(saved["best_loss"]), int(saved["since_best"])
            self.best_weights = saved["weights"]


def validation_losses(
    task: DownstreamTask, head: nn.Module, upstream: Upstream, data_dir: Path, state: TaskState, batch_seconds: float
) -> list[float]:
    """The loss of every batch of ``data_dir`` (whole utterances, no gradients, modes as they are)."""
    losses = []
    with torch.no_grad():
        for batch, hidden, lengths in eval_batches(upstream, data_dir, task.labels, batch_seconds=batch_seconds):
            losses.append(float(task.loss(head, hidden, lengths, batch.to(upstream.device), state).total))
    return losses
