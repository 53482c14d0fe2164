"""Train a downstream task's head on an upstream, resume exactly, and evaluate a trained run.

:func:`train_downstream` is the one trainer every plugin uses: it builds the upstream from a
spec, lets the task prepare its label encoders, then trains head (+ layer weights, + encoder
when fine-tuning) on length-bucketed batches of the training data dir, as a
:class:`~audiossl.downstream.unit.DownstreamUnit` of the training engine (AdamW with the shared
no-decay rule, autocast, accumulation, DDP under torchrun). A run dir
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from audiossl.config import from_dict, to_dict
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels
from audiossl.downstream.unit import DownstreamUnit, engine_config, validation_losses
from audiossl.downstream.upstream import MODES, Upstream, load_upstream, parse_fbank_spec
from audiossl.engine import Engine, remove_stale_temporaries
from audiossl.engine.optim import lr_factor as _lr_factor
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write, latest_checkpoint
from audiossl.models import read_checkpoint

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
    accumulation_steps: int = 1
    """Micro-batches per optimizer step (per process; under torchrun the global batch is N x this)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast of the upstream, head and loss: ``bf16``, ``fp16`` (with a gradient scaler) or ``fp32``."""
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
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.accumulation_steps < 1:
            raise ConfigError(f"accumulation_steps must be >= 1, got {self.accumulation_steps}")
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
    return _lr_factor(step, warmup_steps=config.warmup_steps, schedule=config.schedule, max_steps=config.max_steps)


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
    free = {
        "max_steps",
        "log_every",
        "checkpoint_every",
        "keep_last",
        "device",
        "num_workers",
        "tensorboard",
        "precision",
    }
    changed = [key for key in ("task", "task_options", "upstream") if saved.get(key) != current.get(key)]
    changed += [
        f"config.{key}"
        for key in sorted(set(saved["config"]) | set(current["config"]))
        # a key the saved config lacks is a setting added since, at its default then
        if key not in free and key in saved["config"] and saved["config"].get(key) != current["config"].get(key)
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
    callbacks: Sequence[Callable[[Engine], None]] = (),
) -> DownstreamResult:
    """Train ``task``'s head on ``upstream_spec`` with ``train_dir`` into the run dir ``out_dir``.

    ``resume`` continues from the newest checkpoint (from step 0, logged, when there is none); without it a
    run dir with checkpoints is an error, so a finished run is never overwritten. With
    ``valid_dir`` the validation loss is logged at every checkpoint. ``callbacks`` are called
    with the engine after every optimizer step. Under torchrun every process runs this call.
    """
    config = config or DownstreamConfig()
    run_dir, train_dir = Path(out_dir), Path(train_dir)
    if config.max_utt_seconds is not None and task.level != "utterance":
        raise ConfigError(f"max_utt_seconds crops utterances; task {task.name!r} is {task.level}-level")
    newest = latest_checkpoint(run_dir)
    if resume and newest is None:  # stopped before its first checkpoint: nothing to keep, so start it afresh
        logger.info(
            "resume: no checkpoint in %s yet (the run stopped before its first one); starting it from step 0", run_dir
        )
        resume = False
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

    unit = DownstreamUnit(task, upstream, state, train_dir, config, Path(valid_dir) if valid_dir else None)
    engine = Engine(unit, engine_config(config, task), run_dir, resume=resume, callbacks=callbacks)
    try:
        result = engine.train()
    finally:
        engine.close()
    return DownstreamResult(run_dir, result.step, result.loss, result.valid_loss, result.checkpoint)


def validate(
    task: DownstreamTask, head: nn.Module, upstream: Upstream, data_dir: Path, state: TaskState, batch_seconds: float
) -> float:
    """Mean batch loss over ``data_dir`` (whole utterances, eval mode, no gradients); restores training mode."""
    was_training = head.training
    head.eval()
    upstream.eval()
    losses = validation_losses(task, head, upstream, data_dir, state, batch_seconds)
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
    saved = read_checkpoint(path, keys=("kind", "step", "head", "upstream"))  # never the optimizer state
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
