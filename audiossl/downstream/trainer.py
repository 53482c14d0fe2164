"""Train a downstream task's head on an upstream, resume exactly, and evaluate a trained run.

:func:`train_downstream` is the one trainer every plugin uses: it builds the upstream from a
spec, lets the task prepare its label encoders, then trains head (+ layer weights, + encoder
when fine-tuning) with AdamW on length-bucketed batches of the training data dir. A run dir
holds ``downstream.json`` (task, options, upstream, config), the task state, atomic
checkpoints ``ckpt-<step>.pt`` (the last ``keep_last``), ``train.jsonl`` and ``loss.png``.
A checkpoint carries the optimizer, scheduler, sampler position and random states, so a
resumed run continues exactly as an uninterrupted one would.

:func:`evaluate_downstream` reloads a run (:func:`load_downstream`) and lets the task score a
data dir; the metrics also go to ``OUT_DIR/metrics.json``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from audiossl.config import from_dict, to_dict
from audiossl.data.dataset import AudioDataset, Batch, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches
from audiossl.downstream.upstream import MODES, Upstream, load_upstream, parse_fbank_spec
from audiossl.engine.checkpoint import (
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from audiossl.engine.logging import RunLogger, plot_loss_curve
from audiossl.errors import ConfigError, DataError, UserError
from audiossl.fileio import CHECKPOINT_FORMAT, atomic_write, checkpoint_path, latest_checkpoint, load_checkpoint
from audiossl.progress import progress

logger = logging.getLogger(__name__)

#: Run description written by :func:`train_downstream` and read by :func:`load_downstream`.
RUN_FILE = "downstream.json"


@dataclass(kw_only=True)
class DownstreamConfig:
    """How a downstream head is trained (the upstream and the task are chosen separately)."""

    mode: Literal["frozen", "finetune"] = "frozen"
    """``frozen``: only the layer weights and the head learn (SUPERB); ``finetune``: the encoder too."""
    freeze_steps: int = 0
    """Fine-tuning: the encoder gets no gradient during the first N steps."""
    max_steps: int = 2000
    """Optimizer steps of the run."""
    lr: float = 1.0e-3
    """Peak learning rate of the head and the layer weights."""
    upstream_lr: float = 5.0e-5
    """Peak learning rate of the encoder when fine-tuning."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay of weight matrices (head and encoder)."""
    warmup_steps: int = 0
    """Linear warm-up steps to the peak learning rates."""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """Decay after the warm-up, to zero at ``max_steps`` (or none)."""
    grad_clip: float | None = 10.0
    """Clip the global gradient norm; None = no clipping."""
    batch_seconds: float = 60.0
    """Padded seconds of audio per batch (longest utterance x batch size)."""
    max_utt_seconds: float | None = None
    """Crop longer training utterances to a random window of this length (utterance-level tasks only)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    seed: int = 0
    """Seed of weights (head, random upstreams), batch order and crops."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    log_every: int = 10
    """Steps between log records."""
    checkpoint_every: int = 500
    """Steps between checkpoints (and validations when a valid dir is given); the last step always saves."""
    keep_last: int = 2
    """Checkpoints kept."""
    tensorboard: bool = False
    """Mirror the log to TensorBoard (RUN_DIR/tensorboard)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_steps < 1 or self.log_every < 1 or self.checkpoint_every < 1 or self.keep_last < 1:
            raise ConfigError("max_steps, log_every, checkpoint_every and keep_last must be >= 1")
        if self.freeze_steps < 0 or self.warmup_steps < 0:
            raise ConfigError("freeze_steps and warmup_steps must be >= 0")
        if self.lr <= 0 or self.upstream_lr <= 0 or self.weight_decay < 0 or self.batch_seconds <= 0:
            raise ConfigError("lr, upstream_lr and batch_seconds must be > 0, weight_decay >= 0")
        if self.max_utt_seconds is not None and self.max_utt_seconds <= 0:
            raise ConfigError(f"max_utt_seconds must be > 0 or null, got {self.max_utt_seconds}")


@dataclass
class DownstreamResult:
    """Where a run ended: its dir, last step, last logged training loss and last validation loss."""

    run_dir: Path
    step: int
    loss: float
    valid_loss: float | None
    checkpoint: Path


@dataclass
class DownstreamModel:
    """A trained run reloaded: task, task state, upstream and head (eval mode), and its description."""

    task: DownstreamTask
    state: TaskState
    upstream: Upstream
    head: nn.Module
    info: dict[str, Any]
    checkpoint: Path


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else the CPU; other names as torch reads them."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"device {device!r}: {error}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available")
    return resolved


def lr_factor(step: int, config: DownstreamConfig) -> float:
    """Multiplier of the peak learning rates for optimizer step ``step`` (0-based)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress_ = min(max((step - config.warmup_steps) / max(config.max_steps - config.warmup_steps, 1), 0.0), 1.0)
    if config.schedule == "linear":
        return 1.0 - progress_
    return 0.5 * (1.0 + math.cos(math.pi * progress_))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _param_groups(head: nn.Module, upstream: Upstream, config: DownstreamConfig) -> list[dict[str, Any]]:
    """AdamW groups: decayed matrices and undecayed vectors of the head, the layer weights, the encoder."""
    groups = []
    for params, lr in ((list(head.parameters()), config.lr), (upstream.encoder_parameters(), config.upstream_lr)):
        matrices = [p for p in params if p.requires_grad and p.ndim >= 2]
        vectors = [p for p in params if p.requires_grad and p.ndim < 2]
        groups += [
            {"params": matrices, "lr": lr, "weight_decay": config.weight_decay},
            {"params": vectors, "lr": lr, "weight_decay": 0.0},
        ]
    groups.append({"params": upstream.featurizer_parameters(), "lr": config.lr, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


class _Batches:
    """An endless, resumable stream of training batches: epoch and batches finished in it."""

    def __init__(self, dataset: AudioDataset, config: DownstreamConfig):
        self.dataset = dataset
        self.sampler = BucketBatchSampler(dataset.durations, config.batch_seconds, seed=config.seed)
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


def _run_info(task: DownstreamTask, upstream: Upstream, train_dir: Path, config: DownstreamConfig) -> dict[str, Any]:
    return {
        "task": task.name,
        "task_options": task.options(),
        "labels": list(task.labels),
        "upstream": upstream.spec,
        "upstream_info": {
            "dim": upstream.dim,
            "num_layers": upstream.num_layers,
            "frame_rate": upstream.frame_rate,
            "sample_rate": upstream.sample_rate,
        },
        "train_dir": str(Path(train_dir).resolve()),
        "config": to_dict(config),
    }


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The ``downstream.json`` of a run dir (a DataError when it is not a downstream run)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise DataError(f"not a downstream run dir ({RUN_FILE} is missing)", path)
    return json.loads(path.read_text(encoding="utf-8"))


def _check_same_run(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Resuming with another task, upstream or training recipe is an error (max_steps and logging may change)."""
    free = {"max_steps", "log_every", "checkpoint_every", "keep_last", "device", "num_workers", "tensorboard"}
    changed = [key for key in ("task", "task_options", "upstream") if saved.get(key) != current.get(key)]
    changed += [
        f"config.{key}"
        for key in sorted(set(saved["config"]) | set(current["config"]))
        if key not in free and saved["config"].get(key) != current["config"].get(key)
    ]
    if changed:
        raise ConfigError(f"cannot resume: {', '.join(changed)} differ from the run being resumed", path)


def train_downstream(
    task: DownstreamTask,
    upstream_spec: str,
    train_dir: str | Path,
    out_dir: str | Path,
    config: DownstreamConfig | None = None,
    valid_dir: str | Path | None = None,
    resume: bool = False,
) -> DownstreamResult:
    """Train ``task``'s head on ``upstream_spec`` with ``train_dir`` into the run dir ``out_dir``.

    ``resume`` continues from the newest checkpoint (an error when there is none); without it a
    run dir with checkpoints is an error, so a finished run is never overwritten. With
    ``valid_dir`` the validation loss is logged at every checkpoint.
    """
    config = config or DownstreamConfig()
    run_dir, train_dir = Path(out_dir), Path(train_dir)
    if config.max_utt_seconds is not None and task.level != "utterance":
        raise ConfigError(f"max_utt_seconds crops utterances; task {task.name!r} is {task.level}-level")
    newest = latest_checkpoint(run_dir)
    if resume and newest is None:
        raise DataError("nothing to resume: no checkpoint in the run dir", run_dir)
    if not resume and newest is not None:
        raise ConfigError("run dir already has checkpoints; resume it or choose another dir", run_dir)
    remove_stale_temporaries(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    upstream = load_upstream(upstream_spec, config.mode, config.freeze_steps, seed=config.seed)
    fbank = parse_fbank_spec(upstream.spec)
    if fbank is not None and fbank[2] and task.level == "utterance":
        logger.warning(
            "upstream %s normalises every utterance to zero mean and unit variance per bin, so mean and "
            "mean+std pooling see nothing of it; use fbank-raw as the baseline of an utterance-level task",
            upstream.spec,
        )
    info = _run_info(task, upstream, train_dir, config)
    if resume:
        _check_same_run(read_run_info(run_dir), info, run_dir / RUN_FILE)
        state = task.load_state(run_dir)
    else:
        check_labels(train_dir, task.labels)  # a missing label table is named before prepare reads it
        state = task.prepare(train_dir, run_dir)
        task.save_state(state, run_dir)
    with atomic_write(run_dir / RUN_FILE) as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")
    task.check_data(train_dir, state)
    if valid_dir is not None:
        task.check_data(Path(valid_dir), state)

    _seed_all(config.seed)
    device = resolve_device(config.device)
    head = task.make_head(upstream.dim, state).to(device)
    upstream.to(device)
    optimizer = torch.optim.AdamW(_param_groups(head, upstream, config), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    crop = config.max_utt_seconds if task.level == "utterance" else None
    dataset = AudioDataset(
        train_dir, sample_rate=upstream.sample_rate, labels=task.labels, max_seconds=crop, crop_seed=config.seed
    )
    batches = _Batches(dataset, config)
    step = 0
    if resume:
        saved = load_checkpoint(newest)
        head.load_state_dict(saved["head"])
        upstream.load_checkpoint_state(saved["upstream"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict({**saved["scheduler"], "lr_lambdas": [None] * len(scheduler.lr_lambdas)})
        batches.load_state_dict(saved["sampler"])
        set_rng_state(saved["rng"])
        step = int(saved["step"])
        logger.info("resuming %s from step %d (%s)", run_dir, step, newest.name)

    log = RunLogger(run_dir, tensorboard=config.tensorboard)
    log.write({"kind": "event", "event": "resume" if resume else "start", "step": step, "time": time.time()})
    result_loss, valid_loss, window, started = math.nan, None, [], time.monotonic()
    checkpoint, saved_step = newest, step

    def save() -> Path:
        nonlocal valid_loss, saved_step
        saved_step = step
        if valid_dir is not None:
            valid_loss = validate(task, head, upstream, Path(valid_dir), state, config.batch_seconds)
            log.write({"kind": "valid", "step": step, "loss": valid_loss})
        path = checkpoint_path(run_dir, step)
        save_checkpoint(
            {
                "format": CHECKPOINT_FORMAT,
                "kind": "downstream",
                "step": step,
                "head": head.state_dict(),
                "upstream": upstream.checkpoint_state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
                "sampler": batches.state_dict(),
                "rng": rng_state(),
                "task": task.name,
                "config": to_dict(config),
            },
            path,
        )
        prune_checkpoints(run_dir, config.keep_last)
        plot_loss_curve(log.path, run_dir / "loss.png")
        return path

    try:
        stream = iter(batches)
        for _ in progress(range(step, config.max_steps), desc=f"train {task.name}", unit="step"):
            batch = next(stream).to(device)
            upstream.set_step(step)
            upstream.train()
            head.train()
            hidden, lengths = upstream(batch.waveforms, batch.lengths)  # (B, S, D), (B,)
            out = task.loss(head, hidden, lengths, batch, state)
            if not bool(torch.isfinite(out.total)):
                raise UserError(f"non-finite loss at step {step + 1} (utterances {', '.join(batch.ids[:5])})")
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip or math.inf)) if params else 0.0
            optimizer.step()
            scheduler.step()
            step += 1
            window.append((float(out.total.detach()), {k: float(v) for k, v in out.parts.items()}, out.metrics))
            if step % config.log_every == 0 or step == config.max_steps:
                result_loss = _log_window(log, window, step, batches.epoch, scheduler, grad_norm, started)
                window = []
            if step % config.checkpoint_every == 0 or step == config.max_steps:
                checkpoint = save()
    finally:
        log.write({"kind": "event", "event": "stop", "step": step, "time": time.time()})
        log.close()
    if checkpoint is None or saved_step != step:
        checkpoint = save()
    return DownstreamResult(run_dir, step, result_loss, valid_loss, checkpoint)


def _log_window(
    log: RunLogger, window: list, step: int, epoch: int, scheduler: Any, grad_norm: float, started: float
) -> float:
    """Write one ``train`` record averaging the steps since the last one; return its loss."""
    loss = sum(item[0] for item in window) / len(window)
    parts = {name: sum(item[1].get(name, 0.0) for item in window) / len(window) for name in window[-1][1]}
    metrics = {name: sum(item[2].get(name, 0.0) for item in window) / len(window) for name in window[-1][2]}
    record = {
        "kind": "train",
        "step": step,
        "epoch": epoch,
        "lr": scheduler.get_last_lr()[0],
        "loss": loss,
        "parts": parts,
        "metrics": metrics,
        "grad_norm": grad_norm,
        "elapsed_s": time.monotonic() - started,
    }
    log.write(record)
    logger.info("step %d loss %.4f %s", step, loss, " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return loss


def validate(
    task: DownstreamTask, head: nn.Module, upstream: Upstream, data_dir: Path, state: TaskState, batch_seconds: float
) -> float:
    """Mean batch loss over ``data_dir`` (whole utterances, eval mode, no gradients); restores training mode."""
    was_training = head.training
    head.eval()
    upstream.eval()
    losses = []
    with torch.no_grad():
        for batch, hidden, lengths in eval_batches(upstream, data_dir, task.labels, batch_seconds=batch_seconds):
            losses.append(float(task.loss(head, hidden, lengths, batch.to(upstream.device), state).total))
    head.train(was_training)
    upstream.train(was_training)
    return sum(losses) / max(len(losses), 1)


def _task_for(info: dict[str, Any], task: DownstreamTask | None) -> DownstreamTask:
    if task is not None:
        if task.name != info["task"]:
            raise ConfigError(f"this run trained task {info['task']!r}, not {task.name!r}")
        return task
    from audiossl.downstream.plugin import get_plugin

    plugin = get_plugin(info["task"])
    if plugin.task_factory is None:
        raise ConfigError(f"plugin {plugin.name!r} has no task factory")
    return plugin.task_factory(**info.get("task_options", {}))


def load_downstream(
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    task: DownstreamTask | None = None,
    device: str = "auto",
) -> DownstreamModel:
    """Reload a trained run: its newest checkpoint (or ``checkpoint``), in eval mode on ``device``.

    ``task`` defaults to the installed plugin named in the run, built with the run's options.
    A frozen upstream is reloaded from its spec, so that checkpoint must still exist.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    task = _task_for(info, task)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if path is None:
        raise DataError("no checkpoint (ckpt-*.pt) in this run dir", run_dir)
    saved = load_checkpoint(path)
    if saved.get("kind") != "downstream":
        raise DataError("not a downstream checkpoint", path)
    config = from_dict(DownstreamConfig, info["config"])
    upstream = load_upstream(info["upstream"], config.mode, config.freeze_steps, seed=config.seed)
    upstream.load_checkpoint_state(saved["upstream"])
    state = task.load_state(run_dir)
    head = task.make_head(upstream.dim, state)
    head.load_state_dict(saved["head"])
    resolved = resolve_device(device)
    upstream.set_step(int(saved["step"]))
    return DownstreamModel(task, state, upstream.to(resolved).eval(), head.to(resolved).eval(), info, path)


def evaluate_downstream(
    run_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    task: DownstreamTask | None = None,
    device: str = "auto",
) -> dict[str, float]:
    """Score a trained run on ``data_dir``: the task's metrics, also written to ``OUT_DIR/metrics.json``."""
    model = load_downstream(run_dir, checkpoint=checkpoint, task=task, device=device)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    model.task.check_data(data_dir, model.state)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        metrics = model.task.evaluate(model.head, model.upstream, data_dir, model.state, out_dir)
    report = {
        "task": model.task.name,
        "metrics": metrics,
        "run_dir": str(Path(run_dir).resolve()),
        "checkpoint": str(model.checkpoint.resolve()),
        "data_dir": str(data_dir.resolve()),
        "upstream": model.info["upstream"],
        "mode": model.info["config"]["mode"],
    }
    with atomic_write(out_dir / "metrics.json") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return metrics
