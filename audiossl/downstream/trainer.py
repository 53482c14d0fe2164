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
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from audiossl.config import from_dict, to_dict
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels
from audiossl.downstream.unit import DownstreamUnit, engine_config, validation_losses
from audiossl.downstream.upstream import MODES, Upstream, load_upstream, parse_fbank_spec
from audiossl.engine import BEST_NAME, Engine, remove_stale_temporaries
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
    max_steps: int | None = None
    """Optimizer steps of the run; None = from the data size (:func:`resolve_defaults`: about 100 epochs, 500..4000)."""
    lr: float | None = None
    """Peak learning rate of the head and the layer weights; None = from the batch size (:func:`resolve_defaults`)."""
    upstream_lr: float = 5.0e-5
    """Peak learning rate of the encoder when fine-tuning."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay of weight matrices (head and encoder)."""
    warmup_steps: int | None = None
    """Linear warm-up steps to the peak learning rates; None = the task's ``warmup_ratio`` of ``max_steps``."""
    schedule: Literal["constant", "linear", "cosine"] | None = None
    """Decay after the warm-up, to zero at ``max_steps`` (or none); None = the task's ``schedule``."""
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
    cache_gb: float = 2.0
    """Frozen mode without crops: keep each utterance's layers in memory after its first batch (up to this many
    GiB), so later epochs run only the head; 0 = recompute every batch."""
    standardize: bool = True
    """Standardise every layer's features per dimension by mean/std of the training data (kept in checkpoints)."""
    standardize_utterances: int | None = 500
    """Utterances (a seeded sample) the standardisation statistics are measured on; None = all."""
    early_stopping: bool = True
    """Select the checkpoint with the best dev metric (``RUN_DIR/best.pt``), stop after ``patience`` evaluations
    without improvement. The dev data is ``--valid`` when given, else a held-out part of the training dir."""
    heldout_fraction: float = 0.1
    """Share of the training dir held out as dev data when no valid dir is given."""
    heldout_min: int = 10
    """At least this many held-out utterances; with fewer than twice as many, early stopping is off."""
    heldout_by: Literal["utterance", "speaker"] = "utterance"
    """Held-out utterances stratified by the task's label (``utterance``) or whole speakers (``speaker``)."""
    patience: int = 8
    """Evaluations without a better dev metric before early stopping ends the run."""
    eval_every: int | None = None
    """Steps between dev evaluations; None = ``max_steps // 20`` (at least 1)."""
    budget_minutes: float | None = None
    """Stop after this many wall-clock minutes of training (the best dev checkpoint is kept); None = no limit."""
    lr_sweep: bool = False
    """Train once per learning rate of ``lr_grid`` (same held-out split) and keep the one with the best dev metric."""
    lr_grid: list[float] = field(default_factory=lambda: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2])
    """Learning rates of the sweep (SUPERB users sweep a log grid by hand)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.accumulation_steps < 1:
            raise ConfigError(f"accumulation_steps must be >= 1, got {self.accumulation_steps}")
        if (self.max_steps is not None and self.max_steps < 1) or min(self.log_every, self.checkpoint_every) < 1:
            raise ConfigError("max_steps, log_every, checkpoint_every and keep_last must be >= 1")
        if self.keep_last < 1 or self.patience < 1 or (self.eval_every is not None and self.eval_every < 1):
            raise ConfigError("keep_last, patience and eval_every must be >= 1")
        if self.freeze_steps < 0 or (self.warmup_steps is not None and self.warmup_steps < 0):
            raise ConfigError("freeze_steps and warmup_steps must be >= 0")
        if (self.lr is not None and self.lr <= 0) or self.upstream_lr <= 0 or self.batch_seconds <= 0:
            raise ConfigError("lr, upstream_lr and batch_seconds must be > 0")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.heldout_fraction < 0.5 or self.heldout_min < 1:
            raise ConfigError("heldout_fraction must be in (0, 0.5) and heldout_min >= 1")
        if self.heldout_by not in ("utterance", "speaker"):
            raise ConfigError(f"heldout_by must be utterance or speaker, got {self.heldout_by!r}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise ConfigError(f"budget_minutes must be > 0 or null, got {self.budget_minutes}")
        if self.lr_sweep and (not self.lr_grid or any(lr <= 0 for lr in self.lr_grid)):
            raise ConfigError(f"lr_grid must hold positive learning rates, got {self.lr_grid}")
        if self.cache_gb < 0:
            raise ConfigError(f"cache_gb must be >= 0, got {self.cache_gb}")
        if self.standardize_utterances is not None and self.standardize_utterances < 1:
            raise ConfigError("standardize_utterances must be >= 1 or null")
        if self.max_utt_seconds is not None and self.max_utt_seconds <= 0:
            raise ConfigError(f"max_utt_seconds must be > 0 or null, got {self.max_utt_seconds}")


@dataclass
class DownstreamResult:
    """Where a run ended: its dir, last step, last logged training loss and last validation loss.

    With early stopping: the best dev evaluation's step and metric and ``RUN_DIR/best.pt``;
    ``stopped_by`` says why the run ended before ``max_steps`` (early stopping, budget, a signal).
    """

    run_dir: Path
    step: int
    loss: float
    valid_loss: float | None
    checkpoint: Path
    best_step: int | None = None
    best_score: float | None = None
    stopped_by: str | None = None
    best_checkpoint: Path | None = None


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
        "budget_minutes",
        "patience",
        "cache_gb",
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


#: Target epochs of the automatic step count, and its bounds (:func:`resolve_defaults`).
AUTO_EPOCHS, AUTO_MIN_STEPS, AUTO_MAX_STEPS = 100, 500, 4000
#: Evaluations per run at most when ``eval_every`` is automatic.
AUTO_EVALS = 20


def batches_per_epoch(durations: Sequence[float], batch_seconds: float) -> tuple[int, float]:
    """(batches of one epoch, mean utterances per batch) of the bucketed sampler the trainer uses."""
    from audiossl.data.sampler import BucketBatchSampler

    sampler = BucketBatchSampler(list(durations), batch_seconds, seed=0)
    count = max(len(sampler), 1)
    return count, len(durations) / count


def resolve_defaults(config: DownstreamConfig, task: DownstreamTask, durations: Sequence[float]) -> DownstreamConfig:
    """The config with ``max_steps``, ``lr`` and ``eval_every`` filled in from the training data when they are None.

    The rule (docs/downstream.md): with ``E`` batches per epoch and ``B`` utterances per batch,
    ``max_steps = clip(100 E, 500, 4000)`` (early stopping ends most runs sooner);
    ``lr = task.base_lr * sqrt(B / 32)`` clipped to [1e-4, 1e-2] (Adam's square-root scaling
    with the batch, Malladi et al. 2022); ``eval_every = max(1, max_steps // 20)`` (20 evaluations,
    so ``patience`` 8 stops a run that went 40 % of its length without a better dev metric);
    ``warmup_steps = round(task.warmup_ratio * max_steps)`` and ``schedule = task.schedule``.
    """
    epoch, per_batch = batches_per_epoch(durations, config.batch_seconds)
    changes: dict[str, Any] = {}
    if config.max_steps is None:
        changes["max_steps"] = int(min(max(AUTO_EPOCHS * epoch, AUTO_MIN_STEPS), AUTO_MAX_STEPS))
    if config.lr is None:
        changes["lr"] = float(min(max(task.base_lr * math.sqrt(per_batch / 32.0), 1e-4), 1e-2))
    steps = changes.get("max_steps", config.max_steps)
    if config.eval_every is None:
        changes["eval_every"] = max(1, steps // AUTO_EVALS)
    if config.warmup_steps is None:
        changes["warmup_steps"] = int(round(task.warmup_ratio * steps))
    if config.schedule is None:
        changes["schedule"] = task.schedule
    resolved = replace(config, **changes)
    if changes:
        logger.info(
            "defaults from the data (%d utterances, %d batches/epoch, %.1f utterances/batch): %s",
            len(durations),
            epoch,
            per_batch,
            ", ".join(
                f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in changes.items()
            ),
        )
    return resolved


def _dev_data(
    task: DownstreamTask, train_dir: Path, run_dir: Path, config: DownstreamConfig, valid_dir: Path | None
) -> tuple[Path, Path | None, str]:
    """(train dir, dev dir or None, why) of a run: the given valid dir, a held-out part, or none."""
    if not config.early_stopping:
        return train_dir, valid_dir, "early stopping off"
    if valid_dir is not None:
        return train_dir, valid_dir, f"dev = {valid_dir}"
    from audiossl.data.kaldi import DataDir
    from audiossl.downstream.heldout import heldout_split, write_heldout

    data = DataDir.load(train_dir)
    try:
        split = heldout_split(
            data,
            fraction=config.heldout_fraction,
            min_utterances=config.heldout_min,
            by=config.heldout_by,
            stratify=task.stratify_label if config.heldout_by == "utterance" else None,
            seed=config.seed,
        )
    except DataError as error:
        logger.warning("early stopping off: %s", error)
        return train_dir, None, f"early stopping off: {error.args[0] if error.args else error}"
    held_train, held_dev = write_heldout(data, split, run_dir)
    logger.info(
        "held out %d of %d training utterances as dev data (%s); recorded in %s",
        len(split.dev),
        len(data.utterance_ids),
        f"by {split.by}" + (f", stratified by {split.stratify}" if split.stratify else ""),
        run_dir / "heldout.json",
    )
    return held_train, held_dev, "held-out part of the training dir"


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
    run dir with checkpoints is an error, so a finished run is never overwritten. With early stopping
    (the default) the dev data is ``valid_dir`` or a held-out part of ``train_dir``
    (``RUN_DIR/heldout``), evaluated every ``eval_every`` steps; the best evaluation's weights go to
    ``RUN_DIR/best.pt``, which :func:`load_downstream` prefers. ``config.lr_sweep`` trains one run per
    learning rate (:mod:`audiossl.downstream.sweep`) and leaves the best one in ``out_dir``.
    ``callbacks`` are called with the engine after every optimizer step. Under torchrun every process runs this call.
    """
    config = config or DownstreamConfig()
    if config.lr_sweep:
        return _sweep(task, upstream_spec, train_dir, out_dir, config, valid_dir, resume, callbacks)
    started = time.monotonic()
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
    if not resume:
        check_labels(train_dir, task.labels)  # a missing label table is named before prepare reads it
    fit_dir, dev_dir, dev_note = _dev_data(task, train_dir, run_dir, config, Path(valid_dir) if valid_dir else None)
    from audiossl.data.dataset import AudioDataset

    config = resolve_defaults(config, task, AudioDataset(fit_dir).durations)
    info = _run_info(task, upstream, train_dir, config)
    info["dev"] = {"dir": str(dev_dir.resolve()) if dev_dir else None, "note": dev_note, "metric": task.dev_metric}
    task.upstream_info = dict(info["upstream_info"])  # e.g. a CTC head's frame stacking follows the frame rate
    if resume:
        _check_same_run(read_run_info(run_dir), info, run_dir / RUN_FILE)
        state = task.load_state(run_dir)
    else:
        state = task.prepare(train_dir, run_dir)
        task.save_state(state, run_dir)
    with atomic_write(run_dir / RUN_FILE) as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")
    task.check_data(train_dir, state)
    if dev_dir is not None:
        task.check_data(dev_dir, state)
    if config.standardize and not resume and not task.closed_form:
        from audiossl.downstream.standardize import feature_statistics

        upstream.to(resolve_device(config.device))
        mean, std = feature_statistics(
            upstream,
            fit_dir,
            max_utterances=config.standardize_utterances,
            batch_seconds=config.batch_seconds,
            seed=config.seed,
        )
        upstream.set_standardization(mean, std)

    if task.closed_form:
        return _fit_closed_form(task, upstream, state, fit_dir, dev_dir, run_dir, config)
    unit = DownstreamUnit(task, upstream, state, fit_dir, config, dev_dir, clock_start=started)
    engine = Engine(unit, engine_config(config, task), run_dir, resume=resume, callbacks=callbacks)
    try:
        result = engine.train()
    finally:
        engine.close()
    best = unit.write_best(run_dir) if engine.dist.is_main else None
    interrupted = result.stopped_by is not None and result.stopped_by.startswith("SIG")
    if engine.dist.is_main and not interrupted:  # a user who pressed ^C wants out, not a probe fit
        unit.head.eval()
        upstream.eval()
        upstream.feature_cache = unit.model.cache  # the training part's layers, when cached (probe.pooled_layers)
        try:
            task.after_training(upstream, fit_dir, dev_dir, run_dir, state)
        finally:
            upstream.feature_cache = None
    return DownstreamResult(
        run_dir,
        result.step,
        result.loss,
        result.valid_loss,
        result.checkpoint,
        best_step=unit.best_step,
        best_score=unit.best_score,
        stopped_by=result.stopped_by,
        best_checkpoint=best,
    )


def _sweep(
    task: DownstreamTask,
    upstream_spec: str,
    train_dir: str | Path,
    out_dir: str | Path,
    config: DownstreamConfig,
    valid_dir: str | Path | None,
    resume: bool,
    callbacks: Sequence[Callable[[Engine], None]],
) -> DownstreamResult:
    """The lr sweep (:mod:`audiossl.downstream.sweep`) as a :class:`DownstreamResult` of ``out_dir``."""
    from audiossl.downstream.sweep import sweep_lr

    summary, chosen = sweep_lr(
        task,
        upstream_spec,
        train_dir,
        out_dir,
        config,
        valid_dir,
        train=train_downstream,
        resume=resume,
        callbacks=callbacks,
    )
    out_dir, best = Path(out_dir), summary["best"]
    if chosen is not None:
        return replace(chosen, run_dir=out_dir, best_checkpoint=out_dir / BEST_NAME)
    return DownstreamResult(
        out_dir,
        int(best.get("steps") or 0),
        math.nan,
        None,
        out_dir / BEST_NAME,
        best_step=best["best_step"],
        best_score=best["dev_score"],
        best_checkpoint=out_dir / BEST_NAME,
    )


def _fit_closed_form(
    task: DownstreamTask,
    upstream: Upstream,
    state: TaskState,
    fit_dir: Path,
    dev_dir: Path | None,
    run_dir: Path,
    config: DownstreamConfig,
) -> DownstreamResult:
    """Solve a closed-form head (no SGD) and save it as ``RUN_DIR/best.pt`` (step 0)."""
    from audiossl.engine import save_checkpoint
    from audiossl.fileio import CHECKPOINT_FORMAT

    upstream.to(resolve_device(config.device)).eval()
    head = task.fit_closed_form(upstream, fit_dir, dev_dir, run_dir, state)
    state_dict = {
        "format": CHECKPOINT_FORMAT,
        "kind": "downstream",
        "step": 0,
        "head": head.state_dict(),
        "upstream": upstream.checkpoint_state(),
        "task": task.name,
        "config": to_dict(config),
    }
    path = save_checkpoint(state_dict, run_dir / BEST_NAME)
    logger.info("closed-form head of task %s written to %s", task.name, path)
    return DownstreamResult(run_dir, 0, math.nan, None, path, best_step=0, best_checkpoint=path)


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
    """Reload a trained run: its best dev checkpoint (``best.pt``), else its newest, or ``checkpoint``; eval mode.

    ``task`` defaults to the installed plugin named in the run, built with the run's options.
    A frozen upstream is reloaded from its spec, so that checkpoint must still exist.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    task = _task_for(info, task)
    best = run_dir / BEST_NAME
    path = Path(checkpoint) if checkpoint is not None else (best if best.is_file() else latest_checkpoint(run_dir))
    if path is None:
        raise DataError("no checkpoint (ckpt-*.pt) in this run dir", run_dir)
    saved = read_checkpoint(path, keys=("kind", "step", "head", "upstream"))  # never the optimizer state
    if saved.get("kind") != "downstream":
        raise DataError("not a downstream checkpoint", path)
    config = from_dict(DownstreamConfig, info["config"])
    upstream = load_upstream(info["upstream"], config.mode, config.freeze_steps, seed=config.seed)
    upstream.load_checkpoint_state(saved["upstream"])
    task.upstream_info = dict(info.get("upstream_info") or {}) or None
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
