"""The pretraining loop: data -> front-end -> objective -> AdamW, with exact resume and DDP.

One :class:`Trainer` runs one (encoder, objective) pair described by a
:class:`~audiossl.train.config.PretrainConfig` on one or more data dirs, writing everything to
``RUN_DIR``: ``config.yaml``, ``train.jsonl``, ``tensorboard/``, ``ckpt-<step>.pt`` (last N),
``best.pt`` and ``loss.png``. Under torchrun the same code runs DistributedDataParallel with
every process reading its own shard of the batches.

Exactness. A run stopped at step k and resumed reaches the same weights as an uninterrupted
run: data order depends only on (seed, epoch, position) (:mod:`audiossl.train.data`); the masks
and augmentation of a batch are drawn from generators seeded by (seed, epoch, global batch
index); everything else random (dropout, objectives that use the global generator) comes from
the global random states, which checkpoints save and restore for every process.
"""

from __future__ import annotations

import math
import random
import re
import signal
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.config import to_dict
from audiossl.data.dataset import Batch
from audiossl.engine import distributed
from audiossl.engine.checkpoint import (
    BEST_NAME,
    assert_finite,
    checkpoint_path,
    latest_checkpoint,
    link_best,
    load_checkpoint,
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from audiossl.engine.logging import (
    LossEMA,
    RunLogger,
    WindowMeter,
    format_eta,
    health_warnings,
    plot_loss_curve,
)
from audiossl.errors import ConfigError, UserError
from audiossl.fileio import atomic_write
from audiossl.nn.outputs import LossOutput
from audiossl.progress import progress
from audiossl.train.config import PretrainConfig, dump_config, plain
from audiossl.train.logging import logger
from audiossl.train.model import build_model
from audiossl.train.optim import build_optimizer, build_scheduler, load_scheduler_state, scheduler_state

#: Exit statuses of a run stopped by a signal (the shell's 128 + signal number).
STOP_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(UserError):
    """The loss (or the gradient) became NaN or Inf; the run stopped before updating the weights."""


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


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _batch_seeds(*entropy: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (masks, augmentation) from non-negative integers."""
    first, second = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, dtype=np.uint64)
    return int(first >> np.uint64(1)), int(second >> np.uint64(1))


class Trainer:
    """Pretrain ``config``'s encoder with its objective on ``data_dirs``, into ``run_dir``.

    ``resume=True`` continues from the newest checkpoint of ``run_dir`` (an error when there is
    none); without it, a ``run_dir`` that already has checkpoints is an error, so a finished
    run is never overwritten by accident. ``callbacks`` are called after every optimizer step
    with the trainer (tests use them to interrupt a run).
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
        self.config = config
        self.run_dir = Path(run_dir)
        self.data_dirs = [str(Path(d)) for d in data_dirs]
        self.callbacks = list(callbacks)
        self.dist = distributed.setup(config.run.device)
        self.device = self.dist.device
        self._stop_requested: str | None = None
        self._saved_step = -1
        self._last_valid: tuple[int, float] = (-1, math.nan)
        try:
            self._setup(resume)
        except BaseException:
            distributed.cleanup(self.dist)
            raise

    # ------------------------------------------------------------------------- set-up

    def _setup(self, resume: bool) -> None:
        config, run = self.config, self.config.run
        if run.num_threads is not None:
            torch.set_num_threads(run.num_threads)
        state, resume_path = None, None
        existing = latest_checkpoint(self.run_dir)
        if resume:
            if existing is None:
                raise ConfigError("--resume: no checkpoint (ckpt-*.pt) in this run dir", self.run_dir)
            resume_path, state = existing, load_checkpoint(existing)
        elif existing is not None:
            raise ConfigError(
                f"run dir already holds checkpoints ({existing.name}); pass --resume to continue it "
                "or choose another --out",
                self.run_dir,
            )
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir)
        _seed_all(run.seed)
        built = build_model(config, self.data_dirs, self.run_dir, self.dist, restoring=state is not None)
        self.data, self.valid, self.inputs = built.data, built.valid, built.inputs
        self.objective, self.encoder_config = built.objective, built.encoder_config
        self.inputs.to(self.device)
        self.objective.to(self.device)
        self.optimizer = build_optimizer(self.objective, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, run.max_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=run.precision == "fp16")
        self.autocast_dtype = _AUTOCAST[run.precision]
        self.step = 0
        self.ema = LossEMA(run.ema_decay)
        self.best, self.best_step = math.inf, None
        self.elapsed_before = 0.0
        if state is not None:
            self._restore(state, resume_path)
        else:
            _seed_all(run.seed + self.dist.rank)  # ranks draw different dropout
        self.model: torch.nn.Module = self.objective
        if self.dist.distributed:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.objective,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=run.find_unused_parameters,
            )
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=run.tensorboard)
        if self.dist.is_main:
            with atomic_write(self.run_dir / "config.yaml") as handle:
                handle.write(dump_config(config))
            event = {"kind": "event", "event": "resume" if state else "start", "step": self.step}
            self.log.write({**event, "data": self.data_dirs, "world_size": self.dist.world_size})

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Load every state of a checkpoint; the log says where the run continues from."""
        try:
            self.objective.load_state_dict(state["model"])
            self.inputs.load_state_dict(state["inputs"])
        except RuntimeError as error:
            raise ConfigError(f"the checkpoint does not fit this config's model: {error}", path) from None
        self.optimizer.load_state_dict(state["optimizer"])
        load_scheduler_state(self.scheduler, state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        try:
            self.data.load_state_dict(state["data"])
        except ValueError as error:
            raise ConfigError(f"cannot resume this checkpoint: {error}", path) from None
        self.step = int(state["step"])
        self._saved_step = self.step
        meta = state["trainer"]
        self.ema = LossEMA(self.config.run.ema_decay, float(meta["ema_value"]), int(meta["ema_count"]))
        self.best = float(meta["best"])
        self.best_step = meta["best_step"]
        self.elapsed_before = float(meta["elapsed_s"])
        if len(state["rng"]) == self.dist.world_size:
            set_rng_state(state["rng"][self.dist.rank])
        else:
            logger.warning(
                "checkpoint was written by %d process(es), this run has %d: random states are re-seeded, "
                "so the continuation is not bit-exact",
                len(state["rng"]),
                self.dist.world_size,
            )
            _seed_all(self.config.run.seed + 1000 * self.step + self.dist.rank)
        changed = _differences(state["config"], plain(to_dict(self.config)))
        if changed:
            logger.warning("config differs from the checkpoint's in: %s", ", ".join(changed))
        if self.dist.is_main:
            logger.info("resuming from step %d of %s", self.step, path)

    # ------------------------------------------------------------------------- the loop

    def request_stop(self, reason: str = "request") -> None:
        """Stop after the current step, writing a checkpoint (what SIGINT/SIGTERM do)."""
        self._stop_requested = self._stop_requested or reason

    def train(self) -> PretrainResult:
        """Train until ``run.max_steps`` or a stop request; return how it ended."""
        run = self.config.run
        previous = self._install_signal_handlers()
        self.objective.train()
        self.inputs.train()
        batches = iter(self.data)
        meter = WindowMeter()
        started = window_start = time.monotonic()
        steps_left = max(run.max_steps - self.step, 0)
        bar = progress(range(steps_left), desc="pretrain", total=steps_left, unit="step")
        stopped_by = None
        try:
            for _ in bar:
                values, utterances, seconds, stop = self._train_step(batches)
                self.step += 1
                self.objective.on_step_end(self.step)
                self.ema.update(values.pop("global_loss"))  # the same on every process
                meter.add(values, utterances, seconds)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(
                        loss=f"{values['loss']:.3f}",
                        utt_s=f"{meter.utterances / max(time.monotonic() - window_start, 1e-9):.1f}",
                    )
                if self.step % run.log_every == 0 or self.step == run.max_steps:
                    now = time.monotonic()
                    per_step = (now - started) / max(self.step - (run.max_steps - steps_left), 1)
                    eta = per_step * (run.max_steps - self.step)
                    self._log_window(meter, now - window_start, now - started, eta)
                    meter.reset()
                    window_start = now
                valid_every = run.valid_every or run.checkpoint_every
                if self.valid is not None and self.step % valid_every == 0:
                    self.validate()
                if self.step % run.checkpoint_every == 0:
                    self.save()
                for callback in self.callbacks:
                    callback(self)
                if self._agree_stop(stop):
                    stopped_by = self._agreed_stop_reason()
                    break
        finally:
            self._restore_signal_handlers(previous)
            if hasattr(bar, "close"):
                bar.close()
        if self._saved_step != self.step and self.step > 0:
            if self.valid is not None and stopped_by is None and self._last_valid[0] != self.step:
                self.validate()
            self.save()
        self.elapsed_before += time.monotonic() - started
        if stopped_by is not None:
            logger.warning(
                "stopped by %s at step %d; checkpoint %s (continue with --resume)",
                stopped_by,
                self.step,
                checkpoint_path(self.run_dir, self.step),
            )
        if self.dist.is_main:
            self.log.write({"kind": "event", "event": "stop" if stopped_by else "finish", "step": self.step})
            plot_loss_curve(self.log.path, self.run_dir / "loss.png")
        best = self.run_dir / BEST_NAME
        last = latest_checkpoint(self.run_dir)
        return PretrainResult(
            self.run_dir, self.step, stopped_by, last, best if best.is_file() else None, self.ema.mean
        )

    def _train_step(self, batches: Iterator[tuple[Batch, int, int]]) -> tuple[dict[str, float], int, float, bool]:
        """One optimizer step over ``accumulation_steps`` micro-batches -> (values, utterances, seconds, stop).

        ``values``: this process's loss, parts and metrics (means over micro-batches), the gradient
        norm, and ``global_loss``, the loss averaged over all processes.
        """
        config = self.config
        accumulation = config.optim.accumulation_steps
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = defaultdict(float)
        utterances, seconds, bad = 0, 0.0, None
        for micro in range(accumulation):
            batch, epoch, index = next(batches)
            last = micro == accumulation - 1
            sync = self.model.no_sync() if self.dist.distributed and not last else nullcontext()
            with sync:
                out = self._forward(batch, epoch, index)
                self.scaler.scale(out.total / accumulation).backward()
            values = _values(out)
            if bad is None and not math.isfinite(values["loss"]):
                bad = (values, epoch, index)
            for name, value in values.items():
                sums[name] += value / accumulation
            utterances += len(batch.ids)
            seconds += float(batch.lengths.sum()) / config.data.sample_rate
        # One collective per step: any rank's NaN or stop request, and the loss averaged over ranks.
        shared = [float(bad is not None), float(self._stop_requested is not None), 0.0 if bad else sums["loss"]]
        flags = distributed.all_reduce(torch.tensor(shared, dtype=torch.float64, device=self.device), self.dist).cpu()
        global_loss = float(flags[2]) / self.dist.world_size
        if flags[0] > 0:
            self._raise_nonfinite("loss", bad)
        self.scaler.unscale_(self.optimizer)
        clip = config.optim.grad_clip if config.optim.grad_clip is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.objective.parameters(), clip))
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            self._raise_nonfinite("gradient norm", ({"loss": grad_norm}, self.data.epoch, -1))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with warnings.catch_warnings():
            # fp16: the scaler skips steps whose gradients overflowed; the schedule still advances.
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            self.scheduler.step()
        sums["grad_norm"] = grad_norm
        return {**sums, "global_loss": global_loss}, utterances, seconds, bool(flags[1] > 0)

    def _forward(self, batch: Batch, epoch: int, index: int) -> LossOutput:
        """Front-end, then the objective under autocast; masks and augmentation seeded per batch."""
        mask_seed, augment_seed = _batch_seeds(self.config.run.seed, epoch, index)
        mask_generator = torch.Generator(device=self.device).manual_seed(mask_seed)
        batch = batch.to(self.device, non_blocking=True)
        kwargs = self.objective.batch_inputs(batch, self.inputs, generator=torch.Generator().manual_seed(augment_seed))
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            return self.model(**kwargs, step=self.step, generator=mask_generator)

    def _raise_nonfinite(self, what: str, bad: tuple[dict[str, float], int, int] | None) -> None:
        last = latest_checkpoint(self.run_dir)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        detail = ""
        if bad is not None:
            values, epoch, index = bad
            parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k != "loss")
            detail = f" ({what} {values['loss']}, epoch {epoch}, batch {index}{'; ' + parts if parts else ''})"
        message = (
            f"non-finite {what} at step {self.step + 1}{detail}: the run stopped before updating the weights; "
            f"{kept}. Lower optim.lr, tighten optim.grad_clip or use precision fp32/bf16, then --resume"
        )
        if self.dist.is_main:
            self.log.write({"kind": "event", "event": "nonfinite", "step": self.step + 1, "message": message})
        raise NonFiniteLossError(message)

    # ------------------------------------------------------------------------- validation, logs

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean loss per utterance over the validation data (fixed masks per batch), or None without it."""
        if self.valid is None:
            return None
        self.objective.eval()
        self.inputs.eval()
        sums: dict[str, float] = defaultdict(float)
        try:
            for batch, index in self.valid.epoch_batches(self.config.run.valid_max_batches):
                out = self._forward_unwrapped(batch, index)
                items = len(batch.ids)
                for name, value in _values(out).items():
                    sums[name] += value * items
                sums["items"] += items
        finally:
            self.objective.train()
            self.inputs.train()
        total = _merge_sums(distributed.all_gather_objects(dict(sums), self.dist))
        items = max(total.pop("items", 0.0), 1.0)
        means = {name: value / items for name, value in total.items()}
        record = {"kind": "valid", "step": self.step, "loss": means.pop("loss", math.nan), "parts": means}
        self._last_valid = (self.step, record["loss"])
        self.log.write(record)
        if self.dist.is_main:
            logger.info("step %d validation loss %.4f", self.step, record["loss"])
        return record["loss"]

    def _forward_unwrapped(self, batch: Batch, index: int) -> LossOutput:
        mask_seed, _ = _batch_seeds(self.config.run.seed, 2**31 - 1, index)  # fixed masks, unlike training
        mask_generator = torch.Generator(device=self.device).manual_seed(mask_seed)
        batch = batch.to(self.device, non_blocking=True)
        kwargs = self.objective.batch_inputs(batch, self.inputs)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            return self.objective(**kwargs, step=self.step, generator=mask_generator)

    def _log_window(self, meter: WindowMeter, seconds: float, elapsed: float, eta: float) -> None:
        """Write one ``train`` record: window means over steps and processes, throughput over ``seconds``."""
        gathered = distributed.all_gather_objects((meter.means(), meter.utterances, meter.audio_seconds), self.dist)
        means = _merge_sums([m for m, _, _ in gathered])
        means = {name: value / len(gathered) for name, value in means.items()}
        utterances = sum(u for _, u, _ in gathered)
        audio = sum(a for _, _, a in gathered)
        metrics = {k[len("metrics/") :]: v for k, v in means.items() if k.startswith("metrics/")}
        parts = {k[len("parts/") :]: v for k, v in means.items() if k.startswith("parts/")}
        warnings = health_warnings_for(self.config, metrics)
        record = {
            "kind": "train",
            "step": self.step,
            "epoch": self.data.epoch,
            "lr": self.scheduler.get_last_lr()[0],
            "loss": means["loss"],
            "loss_ema": self.ema.mean,
            "grad_norm": means.get("grad_norm", math.nan),
            "parts": parts,
            "metrics": metrics,
            "utt_per_s": utterances / max(seconds, 1e-9),
            "audio_s_per_s": audio / max(seconds, 1e-9),
            "elapsed_s": self.elapsed_before + elapsed,
            "warnings": warnings,
        }
        self.log.write(record)
        if self.dist.is_main:
            logger.info(
                "step %d/%d loss %.4f (ema %.4f) lr %.3g %.1f utt/s %.1f audio-s/s eta %s",
                self.step,
                self.config.run.max_steps,
                record["loss"],
                record["loss_ema"],
                record["lr"],
                record["utt_per_s"],
                record["audio_s_per_s"],
                format_eta(eta),
            )
            for warning in warnings:
                logger.warning("step %d: %s", self.step, warning)

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything a checkpoint holds (see :mod:`audiossl.train.checkpoint`)."""
        return {
            "format": 1,
            "step": self.step,
            "epoch": self.data.epoch,
            "model": self.objective.state_dict(),
            "inputs": self.inputs.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "data": self.data.state_dict(),
            "rng": rng,
            "world_size": self.dist.world_size,
            "trainer": {
                "ema_value": self.ema.value,
                "ema_count": self.ema.count,
                "best": self.best,
                "best_step": self.best_step,
                "elapsed_s": self.elapsed_before,
            },
            "config": plain(to_dict(self.config)),
            "encoder": {"family": self.config.encoder.family, "config": plain(to_dict(self.encoder_config))},
            "data_dirs": list(self.data_dirs),
        }

    def save(self) -> Path:
        """Write ``ckpt-<step>.pt`` (all processes take part; the main one writes), prune, update best.

        Best is judged on the validation loss of this step when there is validation data (a
        checkpoint without a validation at its step is not a candidate), else on the loss EMA.
        """
        assert_finite(self.objective)
        rng = distributed.all_gather_objects(rng_state(), self.dist)
        path = checkpoint_path(self.run_dir, self.step)
        if self.valid is not None:
            score = self._last_valid[1] if self._last_valid[0] == self.step else math.nan
        else:
            score = self.ema.mean
        improved = self.config.run.keep_best and math.isfinite(score) and score < self.best
        if improved:
            self.best, self.best_step = score, self.step
        if self.dist.is_main:
            save_checkpoint(self.state_dict(rng), path)
            if improved:
                link_best(path, self.run_dir / BEST_NAME)
            prune_checkpoints(self.run_dir, self.config.run.keep_last)
        distributed.barrier(self.dist)
        self._saved_step = self.step
        return path

    # ------------------------------------------------------------------------- signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop_requested is not None:
                raise KeyboardInterrupt(f"second {name}: stopping now without a checkpoint")
            self._stop_requested = name
            logger.warning("%s: stopping after this step with a checkpoint (send it again to stop at once)", name)

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _agree_stop(self, agreed_so_far: bool) -> bool:
        """Whether any process was asked to stop (every process must stop after the same step)."""
        flag = torch.tensor([float(agreed_so_far or self._stop_requested is not None)], dtype=torch.float64)
        return bool(distributed.all_reduce(flag.to(self.device), self.dist, op="max").item() > 0)

    def _agreed_stop_reason(self) -> str:
        return self._stop_requested or "a stop request on another process"

    def close(self) -> None:
        """Close logs and leave the process group."""
        self.log.close()
        distributed.cleanup(self.dist)


def health_warnings_for(config: PretrainConfig, metrics: dict[str, float]) -> list[str]:
    """:func:`~audiossl.train.logging.health_warnings` with the thresholds of ``config``."""
    return health_warnings(metrics, config.run.collapse_perplexity, config.run.max_length_drift)


def _values(out: LossOutput) -> dict[str, float]:
    """Loss, parts and metrics of one forward pass as floats (one device transfer)."""
    tensors = {"loss": out.total, **{f"parts/{name}": value for name, value in out.parts.items()}}
    stacked = torch.stack([value.detach().float().reshape(()) for value in tensors.values()]).cpu().tolist()
    values = dict(zip(tensors, stacked, strict=True))
    values.update({f"metrics/{name}": float(value) for name, value in out.metrics.items()})
    return values


def _merge_sums(dicts: list[dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = defaultdict(float)
    for values in dicts:
        for name, value in values.items():
            merged[name] += value
    return dict(merged)


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [prefix.rstrip(".")]


def pretrain(
    config: PretrainConfig,
    data_dirs: Sequence[str | Path],
    run_dir: str | Path,
    *,
    resume: bool = False,
    callbacks: Sequence[StepCallback] = (),
) -> PretrainResult:
    """Run (or with ``resume`` continue) a pretraining run; the library function behind ``audiossl pretrain``."""
    trainer = Trainer(config, data_dirs, run_dir, resume=resume, callbacks=callbacks)
    try:
        return trainer.train()
    finally:
        trainer.close()
