"""The one training loop: a :class:`~audiossl.engine.unit.TrainUnit` plugged into an :class:`Engine`.

The engine owns the run dir (``ckpt-<step>.pt`` (last N), ``best.pt``, ``train.jsonl``,
``tensorboard/``, ``loss.png``), refuses to overwrite a run that has checkpoints and resumes
one exactly; it seeds, builds AdamW from the unit's parameter groups and the lr schedule, runs
autocast (bf16, or fp16 with a gradient scaler), gradient accumulation and clipping, wraps the
unit's model in DistributedDataParallel under torchrun, stops cleanly on SIGINT/SIGTERM and
before an update with a non-finite loss or gradient.

Exactness. A run stopped at step k and resumed reaches the same weights as an uninterrupted
run when the unit's data order and per-batch draws depend only on (seed, position): the
global random states of every process are saved in each checkpoint and restored. On a resume
``train.jsonl`` is cut back to the restored step, so each step is logged once. Resuming a run
that stopped before its first checkpoint starts it from step 0 (and logs so).
"""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audiossl.engine import distributed, sharding
from audiossl.engine.budget import TIME_BUDGET, Clock, TimeBudget, horizon_note, warmup_note
from audiossl.engine.checkpoint import (
    BEST_NAME,
    assert_finite,
    link_best,
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    seed_all,
    set_rng_state,
)
from audiossl.engine.logging import (
    LossEMA,
    RunLogger,
    WindowMeter,
    format_eta,
    loss_values,
    merge_sums,
    plot_loss_curve,
    truncate_records,
)
from audiossl.engine.optim import build_scheduler, load_scheduler_state, scheduler_state
from audiossl.engine.peers import PeerMonitor, is_peer_failure, rank_label
from audiossl.engine.signals import StopRequest
from audiossl.engine.unit import EngineConfig, TrainUnit
from audiossl.errors import ConfigError, UserError
from audiossl.fileio import CHECKPOINT_FORMAT, checkpoint_path, latest_checkpoint, load_checkpoint
from audiossl.progress import progress

#: Exit statuses of a run stopped by a signal (the shell's 128 + signal number).
STOP_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(UserError):
    """The loss (or the gradient) became NaN or Inf; the run stopped before updating the weights."""


@dataclass
class EngineResult:
    """How a run ended: last step, why it stopped early (None when it finished), checkpoints, losses."""

    run_dir: Path
    step: int
    stopped_by: str | None
    checkpoint: Path | None
    best: Path | None
    loss_ema: float
    loss: float
    valid_loss: float | None


Callback = Callable[[Any], None]


def open_run_dir(run_dir: Path, resume: bool, log: logging.Logger | None = None) -> Path | None:
    """The checkpoint to resume from (``resume``), else None; refuses to overwrite a run.

    Resuming a run dir without a checkpoint (a run stopped before its first one) starts the run
    from step 0 and logs that it does so on ``log``.
    """
    existing = latest_checkpoint(run_dir)
    if resume and existing is None:
        (log or logging.getLogger("audiossl.engine")).info(
            "resume: no checkpoint (ckpt-*.pt) in %s yet (the run stopped before its first one); "
            "starting it from step 0",
            run_dir,
        )
    if not resume and existing is not None:
        raise ConfigError(
            f"run dir already holds checkpoints ({existing.name}); pass --resume to continue it "
            "or choose another --out",
            run_dir,
        )
    return existing


class Engine:
    """Train ``unit`` under ``config`` into ``run_dir`` (``resume``: from its newest checkpoint).

    ``callbacks`` are called after every optimizer step with the engine (tests use them to
    interrupt a run). Construction sets everything up; :meth:`train` runs; :meth:`close` ends.
    ``clock`` (seconds) measures ``config.max_minutes`` from construction; tests pass a fake one.
    """

    def __init__(
        self,
        unit: TrainUnit,
        config: EngineConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        callbacks: Sequence[Callback] = (),
        clock: Clock = time.monotonic,
    ):
        self.budget = TimeBudget(config.max_minutes, clock)  # first: the set-up is part of the user's wall clock
        self.unit = unit
        self.config = config
        self.run_dir = Path(run_dir)
        self.callbacks = list(callbacks)
        self.logger = unit.logger
        self.dist = distributed.setup(config.device, config.dist_timeout_s)
        self.device = self.dist.device
        self.peers = PeerMonitor(self.dist.rank, self.dist.world_size) if self.dist.distributed else None
        self.stop = StopRequest(self.logger)
        self._saved_step = -1
        self._last_valid: tuple[int, float] = (-1, math.nan)
        self.last_loss = math.nan
        self.log: RunLogger | None = None
        try:
            self._setup(resume)
        except BaseException:
            if self.peers is not None:
                self.peers.close()
            distributed.cleanup(self.dist)
            raise

    # ------------------------------------------------------------------------- set-up

    def _setup(self, resume: bool) -> None:
        config = self.config
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        resume_path = open_run_dir(self.run_dir, resume, self.logger)
        state = load_checkpoint(resume_path) if resume_path is not None else None
        if self.dist.is_main:
            remove_stale_temporaries(self.run_dir)
        seed_all(config.seed)
        self.unit.engine = self
        self.unit.setup(self, restoring=state is not None)
        self.sharded = config.distributed == "fsdp" and self.dist.distributed
        self._check_scale_options()
        self.autocast_dtype = AUTOCAST_DTYPES[config.precision]
        self.step = 0
        self.ema = LossEMA(config.ema_decay)
        self.best, self.best_step = math.inf, None
        self.elapsed_before = 0.0
        self._train_started: float | None = None
        if state is not None:
            self._restore(state, resume_path)  # weights into the whole model, before any sharding
        else:
            seed_all(config.seed + self.dist.rank)  # ranks draw different dropout
        # The optimizer is built on the wrapped model's parameters: FSDP replaces them by shards.
        self.model = self.wrap(self.unit.model, config.find_unused_parameters)
        self.optimizer = torch.optim.AdamW(
            self.unit.parameter_groups(config), lr=config.lr, betas=tuple(config.betas), eps=config.eps
        )
        self.scheduler = build_scheduler(
            self.optimizer,
            warmup_steps=config.warmup_steps,
            schedule=config.schedule,
            max_steps=config.max_steps,
            min_lr_ratio=config.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        note = warmup_note(config.warmup_steps, config.max_steps)
        if note is not None and self.dist.is_main:
            self.logger.warning("%s", note)
        if state is not None:
            self._restore_optimizer(state)
        if self.dist.is_main:  # steps past the restored one (all of them, from step 0) are done again: logged once
            truncate_records(self.run_dir / "train.jsonl", self.step)
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main, tensorboard=config.tensorboard)
        if self.dist.is_main:
            event = {"kind": "event", "event": "resume" if state else "start", "step": self.step}
            self.log.write({**event, **self.unit.start_record(), "world_size": self.dist.world_size})

    def _check_scale_options(self) -> None:
        """Refuse combinations the engine cannot run; say when an option has nothing to act on."""
        config = self.config
        if config.distributed == "fsdp" and config.precision == "fp16":
            raise ConfigError(
                "run.distributed=fsdp with precision fp16 is not supported (the gradient scaler does not "
                "handle sharded gradients): use precision bf16 or fp32"
            )
        if config.distributed == "fsdp" and not self.dist.distributed and self.dist.is_main:
            self.logger.info("run.distributed=fsdp: one process, nothing to shard; training as usual")

    def wrap(self, module: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        """``module`` ready to train: per-block options set, then DDP or FSDP under torchrun.

        DDP wraps (the module itself is kept as ``unit.model``); FSDP shards ``module`` in place.
        One process gets the module itself.
        """
        config = self.config
        if config.activation_checkpointing or config.compile:
            blocks = sharding.prepare_blocks(
                module,
                activation_checkpointing=config.activation_checkpointing,
                compile=config.compile,
                compile_backend=config.compile_backend,
            )
            if blocks == 0:
                self.logger.warning(
                    "activation checkpointing / compile act on encoder blocks; %s has none",
                    type(module).__name__,
                )
        if not self.dist.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        if self.sharded:
            return sharding.fully_shard_model(module)
        return torch.nn.parallel.DistributedDataParallel(
            module,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
        )

    def autocast(self) -> AbstractContextManager:
        """The autocast region of ``config.precision`` on this device (units wrap their model call in it)."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _restore_optimizer(self, state: dict[str, Any]) -> None:
        """Load the optimizer, schedule and scaler states (after the model was wrapped)."""
        optimizer_state = state["optimizer"]
        if self.sharded:  # checkpoints are full: split each state like its sharded parameter
            optimizer_state = sharding.shard_optimizer_state(optimizer_state, self.optimizer)
        self.optimizer.load_state_dict(optimizer_state)
        if "scheduler" in state:  # vocoder checkpoints of earlier releases have none (constant lr)
            load_scheduler_state(self.scheduler, state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Load the unit's states, counters and random states; the log says where the run continues from."""
        self.unit.load_state_dict(state, path)
        own = state.get("rank_states") or []
        self.unit.load_rank_state(own[self.dist.rank] if len(own) == self.dist.world_size else None, path)
        self.step = int(state["step"])
        self._saved_step = self.step
        meta = state.get("trainer", {})
        self.ema = LossEMA(self.config.ema_decay, float(meta.get("ema_value", 0.0)), int(meta.get("ema_count", 0)))
        self.best = float(meta.get("best", math.inf))
        self.best_step = meta.get("best_step")
        self.elapsed_before = float(meta.get("elapsed_s", 0.0))
        rng = state.get("rng", [])
        rng = rng if isinstance(rng, list) else [rng]  # one dict: downstream runs of earlier releases
        if len(rng) == self.dist.world_size:
            set_rng_state(rng[self.dist.rank])
        else:
            self.logger.warning(
                "checkpoint was written by %d process(es), this run has %d: random states are re-seeded, "
                "so the continuation is not bit-exact",
                len(rng),
                self.dist.world_size,
            )
            seed_all(self.config.seed + 1000 * self.step + self.dist.rank)
        if self.dist.is_main:
            self.logger.info("resuming from step %d of %s", self.step, path)

    # ------------------------------------------------------------------------- the loop

    def request_stop(self, reason: str = "request") -> None:
        """Stop after the current step, writing a checkpoint (what SIGINT/SIGTERM do)."""
        self.stop.request(reason)

    def train(self) -> EngineResult:
        """Train until ``max_steps`` or a stop request; return how it ended."""
        config, unit = self.config, self.unit
        unit.train()
        batches = unit.batches()
        meter = WindowMeter()
        clock = self.budget.clock  # time.monotonic, unless a test injected a fake clock
        started = window_start = self._train_started = clock()
        steps_left = max(config.max_steps - self.step, 0)
        bar = progress(range(steps_left), desc=config.label, total=steps_left, unit="step")
        stopped_by, horizon_checked = None, False
        if self.budget.max_minutes is not None and self.dist.is_main:
            self.logger.info("time budget: %s", self.budget.describe())
        try:
            with self.stop.handling_signals(), self._naming_failures():
                for _ in bar:
                    values, utterances, seconds, stop = self._train_step(batches)
                    self.step += 1
                    unit.on_step_end(self.step)
                    self.ema.update(values.pop("global_loss"))  # the same on every process
                    meter.add(values, utterances, seconds)
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(
                            loss=f"{values['loss']:.3f}",
                            utt_s=f"{meter.utterances / max(clock() - window_start, 1e-9):.1f}",
                        )
                    if self.step % config.log_every == 0 or self.step == config.max_steps:
                        now = clock()
                        per_step = (now - started) / max(self.step - (config.max_steps - steps_left), 1)
                        self._log_window(
                            meter, now - window_start, now - started, per_step * (config.max_steps - self.step)
                        )
                        meter.reset()
                        window_start = now
                        if not horizon_checked and per_step > 0 and self.dist.is_main:
                            horizon_checked = True
                            fits = self.budget.remaining_steps(per_step)
                            note = horizon_note(self.step, config.max_steps, fits, config.schedule)
                            if note is not None:
                                self.logger.warning("%s", note)
                    if unit.has_validation and self.step % (config.valid_every or config.checkpoint_every) == 0:
                        self.validate()
                    if self.step % config.checkpoint_every == 0:
                        self.save()
                    for callback in self.callbacks:
                        callback(self)
                    out_of_time = self.budget.spent() and self.step < config.max_steps
                    if self._agree_stop(stop, out_of_time):
                        stopped_by = self.stop.reason or "a stop request on another process"
                        break
        finally:
            if hasattr(bar, "close"):
                bar.close()
        if self._saved_step != self.step and self.step > 0:
            with self._naming_failures():  # the last validation and save are collectives too
                if unit.has_validation and stopped_by is None and self._last_valid[0] != self.step:
                    self.validate()
                self.save()
        self.elapsed_before += clock() - started
        self._train_started = None
        if stopped_by is not None and self.dist.is_main:
            self.logger.warning(
                "stopped by %s at step %d of %d; checkpoint %s (continue with --resume)",
                self.budget.describe() if stopped_by == TIME_BUDGET else stopped_by,
                self.step,
                config.max_steps,
                checkpoint_path(self.run_dir, self.step),
            )
        if self.dist.is_main:
            event = {"kind": "event", "event": "stop" if stopped_by else "finish", "step": self.step}
            self.log.write({**event, "reason": stopped_by} if stopped_by else event)
            plot_loss_curve(self.log.path, self.run_dir / "loss.png")
        best = self.run_dir / BEST_NAME
        valid = self._last_valid[1] if self._last_valid[0] >= 0 else None
        return EngineResult(
            self.run_dir,
            self.step,
            stopped_by,
            latest_checkpoint(self.run_dir),
            best if best.is_file() else None,
            self.ema.mean,
            self.last_loss,
            valid,
        )

    def _train_step(self, batches: Iterator[Any]) -> tuple[dict[str, float], int, float, bool]:
        """One optimizer step over ``accumulation_steps`` micro-batches -> (values, utterances, seconds, stop).

        ``values``: this process's loss, parts and metrics (means over micro-batches), the gradient
        norm, and ``global_loss``, the loss averaged over all processes.
        """
        config, unit = self.config, self.unit
        accumulation = config.accumulation_steps
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = defaultdict(float)
        utterances, seconds, bad = 0, 0.0, None
        for micro in range(accumulation):
            item = next(batches)
            last = micro == accumulation - 1
            with self._gradient_sync(last):
                out = unit.forward(self.model, item, self.step)
                self.scaler.scale(out.total / accumulation).backward()
            values = loss_values(out)
            if bad is None and not math.isfinite(values["loss"]):
                bad = (values, unit.describe(item))
            for name, value in values.items():
                sums[name] += value / accumulation
            done, audio = unit.measure(item)
            utterances += done
            seconds += audio
        # One collective per step: any rank's NaN or stop request, and the loss averaged over ranks.
        shared = [float(bad is not None), float(self.stop.reason is not None), 0.0 if bad else sums["loss"]]
        flags = distributed.all_reduce(torch.tensor(shared, dtype=torch.float64, device=self.device), self.dist).cpu()
        global_loss = float(flags[2]) / self.dist.world_size
        if flags[0] > 0:
            self._raise_nonfinite("loss", bad)
        self.scaler.unscale_(self.optimizer)
        clip = config.grad_clip if config.grad_clip is not None else math.inf
        grad_norm = sharding.norm_value(torch.nn.utils.clip_grad_norm_(unit.model.parameters(), clip))
        if not self.scaler.is_enabled() and not math.isfinite(grad_norm):
            self._raise_nonfinite("gradient norm", ({"loss": grad_norm}, f"epoch {unit.epoch}, batch -1"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with warnings.catch_warnings():
            # fp16: the scaler skips steps whose gradients overflowed; the schedule still advances.
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            self.scheduler.step()
        sums["grad_norm"] = grad_norm
        return {**sums, "global_loss": global_loss}, utterances, seconds, bool(flags[1] > 0)

    def _gradient_sync(self, sync: bool) -> AbstractContextManager:
        """Whether this micro-batch's backward synchronises gradients (only the last of a step does)."""
        if self.sharded:
            sharding.set_gradient_sync(self.model, sync)
            return nullcontext()
        if self.model is not self.unit.model and not sync:
            return self.model.no_sync()
        return nullcontext()

    @contextmanager
    def _naming_failures(self) -> Iterator[None]:
        """Turn a failed collective into an error naming the lost rank; leave last words on an own error."""
        try:
            yield
        except Exception as error:
            if self.peers is None:
                raise
            if is_peer_failure(error):
                failure = self.peers.failure(error, self.step, rank_label(self.dist.rank, self.dist.world_size))
                self.logger.error("%s", failure)
                raise failure from error
            self.peers.last_words(error)
            raise

    def _raise_nonfinite(self, what: str, bad: tuple[dict[str, float], str] | None) -> None:
        last = latest_checkpoint(self.run_dir)
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        detail = ""
        if bad is not None:
            values, where = bad
            parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k != "loss")
            where = f", {where}" if where else ""
            detail = f" ({what} {values['loss']}{where}{'; ' + parts if parts else ''})"
        message = (
            f"non-finite {what} at step {self.step + 1}{detail}: the run stopped before updating the weights; "
            f"{kept}. {self.unit.nonfinite_hint}"
        )
        if self.dist.is_main:
            self.log.write({"kind": "event", "event": "nonfinite", "step": self.step + 1, "message": message})
        raise NonFiniteLossError(message)

    # ------------------------------------------------------------------------- validation, logs

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean validation loss per item over every process (None when the unit has no validation data)."""
        if not self.unit.has_validation:
            return None
        self.unit.train(False)
        try:
            sums = self.unit.validate(self.step) or {}
        finally:
            self.unit.train(True)
        total = merge_sums(distributed.all_gather_objects(dict(sums), self.dist))
        items = max(total.pop("items", 0.0), 1.0)
        means = {name: value / items for name, value in total.items()}
        loss = means.pop("loss", math.nan)
        record = {"kind": "valid", "step": self.step, "loss": loss, "parts": means}
        self._last_valid = (self.step, loss)
        self.log.write(record)
        if self.dist.is_main:
            self.logger.info("step %d validation loss %.4f", self.step, loss)
        return loss

    def _log_window(self, meter: WindowMeter, seconds: float, elapsed: float, eta: float) -> None:
        """Write one ``train`` record: window means over steps and processes, throughput over ``seconds``."""
        gathered = distributed.all_gather_objects((meter.means(), meter.utterances, meter.audio_seconds), self.dist)
        means = merge_sums([m for m, _, _ in gathered])
        means = {name: value / len(gathered) for name, value in means.items()}
        utterances = sum(u for _, u, _ in gathered)
        audio = sum(a for _, _, a in gathered)
        metrics = {k[len("metrics/") :]: v for k, v in means.items() if k.startswith("metrics/")}
        parts = {k[len("parts/") :]: v for k, v in means.items() if k.startswith("parts/")}
        found = self.unit.warnings(metrics)
        record = {
            "kind": "train",
            "step": self.step,
            "epoch": self.unit.epoch,
            "lr": self.scheduler.get_last_lr()[0],
            "loss": means["loss"],
            "loss_ema": self.ema.mean,
            "grad_norm": means.get("grad_norm", math.nan),
            "parts": parts,
            "metrics": metrics,
            "utt_per_s": utterances / max(seconds, 1e-9),
            "audio_s_per_s": audio / max(seconds, 1e-9),
            "elapsed_s": self.elapsed_before + elapsed,
            "warnings": found,
        }
        self.last_loss = record["loss"]
        self.log.write(record)
        if self.dist.is_main:
            self.logger.info(
                "step %d/%d loss %.4f (ema %.4f) lr %.3g %.1f utt/s %.1f audio-s/s eta %s",
                self.step,
                self.config.max_steps,
                record["loss"],
                record["loss_ema"],
                record["lr"],
                record["utt_per_s"],
                record["audio_s_per_s"],
                format_eta(eta),
            )
            for warning in found:
                self.logger.warning("step %d: %s", self.step, warning)

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self, rng: list[dict[str, Any]], rank_states: list[Any] | None = None) -> dict[str, Any]:
        """Everything a checkpoint holds: the unit's entries and the engine's (optimizer, schedule, rng...)."""
        extra = {"rank_states": rank_states} if rank_states and any(s is not None for s in rank_states) else {}
        return {
            **extra,
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            **self.unit.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state(self.scheduler),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng,
            "world_size": self.dist.world_size,
            "trainer": {
                "ema_value": self.ema.value,
                "ema_count": self.ema.count,
                "best": self.best,
                "best_step": self.best_step,
                "elapsed_s": self._elapsed_s(),
            },
        }

    def _elapsed_s(self) -> float:
        """Training seconds of the whole run so far: earlier invocations and this one's loop."""
        running = 0.0 if self._train_started is None else self.budget.clock() - self._train_started
        return self.elapsed_before + running

    def save(self) -> Path:
        """Write ``ckpt-<step>.pt`` (all processes take part; the main one writes), prune, update best.

        Best is judged on the validation loss of this step when there is validation data (a
        checkpoint without a validation at its step is not a candidate), else on the loss EMA.
        """
        assert_finite(self.unit.model)
        rng = distributed.all_gather_objects(rng_state(), self.dist)
        ranks = distributed.all_gather_objects(self.unit.rank_state(), self.dist)
        path = checkpoint_path(self.run_dir, self.step)
        if self.unit.has_validation:
            score = self._last_valid[1] if self._last_valid[0] == self.step else math.nan
        else:
            score = self.ema.mean
        improved = self.config.keep_best and math.isfinite(score) and score < self.best
        if improved:
            self.best, self.best_step = score, self.step
        state = None
        if self.sharded:  # every process takes part in gathering the shards; the main one keeps them
            state = sharding.full_state(self.state_dict(rng, ranks), keep=self.dist.is_main)
        if self.dist.is_main:
            save_checkpoint(state if state is not None else self.state_dict(rng, ranks), path)
            if improved:
                link_best(path, self.run_dir / BEST_NAME)
            prune_checkpoints(self.run_dir, self.config.keep_last)
        distributed.barrier(self.dist)
        self._saved_step = self.step
        return path

    # ------------------------------------------------------------------------- stops

    def _agree_stop(self, agreed_so_far: bool, out_of_time: bool = False) -> bool:
        """Whether any process was asked to stop (every process must stop after the same step).

        A time budget spent on any process stops every process with the reason :data:`TIME_BUDGET`
        (clocks differ a little between processes; the reason must not), unless one has its own.
        """
        flags = [float(agreed_so_far or self.stop.reason is not None), float(out_of_time)]
        agreed = distributed.all_reduce(
            torch.tensor(flags, dtype=torch.float64, device=self.device), self.dist, op="max"
        )
        if agreed[1].item() > 0 and self.stop.reason is None:
            self.stop.request(TIME_BUDGET)
        return bool(agreed.max().item() > 0)

    def close(self) -> None:
        """Close logs, stop the heartbeats and leave the process group."""
        if self.log is not None:
            self.log.close()
        if self.peers is not None:
            self.peers.close()
        distributed.cleanup(self.dist)
