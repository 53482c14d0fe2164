"""``max_minutes``: a wall-clock budget stops the run with a checkpoint, and a resume continues it exactly.

The engine reads time from an injected clock: a fake one that a step callback moves forward by a
minute per step, so the stop step is known without timing anything.
"""

from __future__ import annotations

import itertools
import json
import logging

import pytest
import torch
from torch import nn

from audiossl.engine import TIME_BUDGET, Engine, EngineConfig, TrainUnit
from audiossl.fileio import checkpoint_path, latest_checkpoint, load_checkpoint
from audiossl.nn.outputs import LossOutput


class FakeClock:
    """Seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, engine) -> None:  # a step callback: one minute per optimizer step
        self.now += 60.0


class NoisyUnit(TrainUnit):
    """A small MLP with dropout on batches drawn from torch's global generator (restored on resume)."""

    def setup(self, engine, restoring: bool) -> None:
        self.model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.2), nn.Tanh(), nn.Linear(8, 1))

    def batches(self):
        for _ in itertools.count():
            x = torch.randn(6, 5)
            yield x, x.sum(dim=1, keepdim=True)

    def forward(self, model, item, step: int) -> LossOutput:
        x, y = item
        return LossOutput(total=(model(x) - y).pow(2).mean())

    def state_dict(self):
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state, path) -> None:
        self.model.load_state_dict(state["model"])


def run(run_dir, max_minutes=None, resume=False, clock=None):
    config = EngineConfig(
        max_steps=6,
        max_minutes=max_minutes,
        device="cpu",
        lr=1e-2,
        warmup_steps=2,
        schedule="cosine",
        checkpoint_every=100,  # only the stop and the end write checkpoints
        log_every=1,
        tensorboard=False,
    )
    clock = clock or FakeClock()
    engine = Engine(NoisyUnit(), config, run_dir, resume=resume, clock=clock, callbacks=[clock.tick])
    try:
        return engine.train()
    finally:
        engine.close()


def test_budget_stops_with_a_checkpoint_and_the_resume_equals_a_straight_run(tmp_path, caplog):
    straight = run(tmp_path / "straight")
    assert straight.step == 6 and straight.stopped_by is None

    with caplog.at_level(logging.INFO, logger="audiossl.engine"):
        first = run(tmp_path / "budget", max_minutes=2.5)  # 1 min per step: spent after step 3
    assert first.stopped_by == TIME_BUDGET and first.step == 3
    assert first.checkpoint == checkpoint_path(tmp_path / "budget", 3)  # written on the stop, off schedule
    assert "stopped by run.max_minutes=2.5 (3.0 wall-minutes in this invocation) at step 3 of 6" in caplog.text
    events = [json.loads(line) for line in (tmp_path / "budget" / "train.jsonl").read_text().splitlines()]
    assert events[-1] == {"kind": "event", "event": "stop", "step": 3, "reason": TIME_BUDGET}

    # The checkpoint carries the training time so far (3 steps of a minute), and the resumed log goes on from it.
    assert load_checkpoint(first.checkpoint)["trainer"]["elapsed_s"] == pytest.approx(180.0)

    # The budget is per invocation: the resumed run gets 2.5 fresh minutes, enough for the last 3 steps.
    second = run(tmp_path / "budget", max_minutes=2.5, resume=True)
    assert second.stopped_by is None and second.step == 6
    records = [json.loads(line) for line in (tmp_path / "budget" / "train.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed_s"] for r in records if r["kind"] == "train"]
    assert elapsed == sorted(elapsed) and elapsed[-1] == pytest.approx(300.0)  # 5 ticks logged by step 6

    expected = load_checkpoint(checkpoint_path(tmp_path / "straight", 6))
    got = load_checkpoint(checkpoint_path(tmp_path / "budget", 6))
    for name, value in expected["model"].items():
        torch.testing.assert_close(got["model"][name], value, rtol=0, atol=0, msg=name)
    assert got["scheduler"]["last_epoch"] == expected["scheduler"]["last_epoch"] == 6
    before = load_checkpoint(checkpoint_path(tmp_path / "budget", 3))["model"]
    assert any(not torch.equal(before[name], value) for name, value in expected["model"].items())


def test_the_set_up_counts_and_a_budget_spent_during_it_still_trains_one_step(tmp_path):
    clock = FakeClock()

    class SlowSetup(NoisyUnit):
        def setup(self, engine, restoring: bool) -> None:
            super().setup(engine, restoring)
            clock.now += 600.0  # ten minutes of statistics before the first step

    config = EngineConfig(max_steps=6, max_minutes=5, device="cpu", tensorboard=False, checkpoint_every=100)
    engine = Engine(SlowSetup(), config, tmp_path / "run", clock=clock)
    try:
        result = engine.train()
    finally:
        engine.close()
    assert result.stopped_by == TIME_BUDGET and result.step == 1
    assert latest_checkpoint(tmp_path / "run") == checkpoint_path(tmp_path / "run", 1)


def test_a_budget_reached_on_the_last_step_is_a_normal_finish(tmp_path):
    result = run(tmp_path / "run", max_minutes=6.0)  # spent exactly after step 6 = max_steps
    assert result.stopped_by is None and result.step == 6


def test_the_log_warns_when_the_budget_ends_the_run_before_the_schedule_decays(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="audiossl.engine"):
        run(tmp_path / "run", max_minutes=2.5)
    assert "the time budget will stop the run near step" in caplog.text
    assert "set run.max_steps to about" in caplog.text


def test_signal_reason_wins_over_the_budget(tmp_path):
    clock = FakeClock()

    def interrupt(engine) -> None:
        if engine.step == 2:
            engine.request_stop("SIGTERM")
            clock.now += 3600.0

    config = EngineConfig(max_steps=6, max_minutes=1, device="cpu", tensorboard=False, checkpoint_every=100)
    engine = Engine(NoisyUnit(), config, tmp_path / "run", clock=clock, callbacks=[interrupt])
    try:
        result = engine.train()
    finally:
        engine.close()
    assert result.stopped_by == "SIGTERM" and result.step == 2


@pytest.mark.parametrize("value", [0, -1.0])
def test_run_max_minutes_must_be_positive(value):
    from audiossl.errors import ConfigError
    from audiossl.train.config import RunConfig

    with pytest.raises(ConfigError, match="run.max_minutes must be > 0"):
        RunConfig(max_minutes=value)
