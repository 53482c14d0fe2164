"""Early stopping restores the best step, the budget stops a run, defaults follow the data, the lr sweep picks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from audiossl.data.dataset import AudioDataset
from audiossl.data.sampler import BucketBatchSampler
from audiossl.downstream import DownstreamConfig, DownstreamTask, load_downstream, train_downstream
from audiossl.downstream.trainer import resolve_defaults
from audiossl.nn.outputs import LossOutput

#: The dev score of the toy task peaks at this optimizer step.
PEAK = 5


class CountingHead(nn.Module):
    """One trainable weight, and a buffer counting the training forward passes (= optimizer steps here)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))


class ToyTask(DownstreamTask):
    """A task whose dev score is known in advance: ``-|steps - PEAK|``, best after step PEAK."""

    name = "toy"
    dev_metric = "score"
    dev_higher_is_better = True

    def prepare(self, train_dir: Path, out_dir: Path) -> dict[str, Any]:
        return {}

    def make_head(self, dim: int, state: dict[str, Any]) -> nn.Module:
        return CountingHead()

    def loss(self, head, hidden, lengths, batch, state) -> LossOutput:
        if head.training:
            head.steps += 1
        loss = (head.weight - 3.0).pow(2).sum() + 0.0 * hidden.sum()
        return LossOutput(total=loss, parts={}, metrics={})

    def dev_metrics(self, head, upstream, data_dir, state, batch_seconds=60.0) -> dict[str, float]:
        return {"score": -abs(int(head.steps) - PEAK), "loss": float((head.weight - 3.0).pow(2).sum())}

    def evaluate(self, head, upstream, data_dir, state, out_dir) -> dict[str, float]:
        return {"steps": float(head.steps)}


def settings(**changes) -> DownstreamConfig:
    base = {"max_steps": 30, "batch_seconds": 3.0, "log_every": 5, "checkpoint_every": 50, "device": "cpu"}
    return DownstreamConfig(**{"lr": 0.1, "eval_every": 1, "patience": 3, "standardize": False, **base, **changes})


def test_early_stopping_restores_the_best_step(corpus, tmp_path):
    seen: dict[int, float] = {}

    def record(engine) -> None:
        seen[engine.step] = float(engine.unit.head.weight.detach())

    result = train_downstream(
        ToyTask(), "fbank-raw", corpus, tmp_path / "run", settings(), valid_dir=corpus, callbacks=[record]
    )
    # the score falls after step PEAK; patience 3 ends the run three evaluations later
    assert result.best_step == PEAK and result.step == PEAK + 3 and "early stopping" in result.stopped_by
    assert result.best_score == 0
    model = load_downstream(tmp_path / "run", device="cpu", task=ToyTask())  # best.pt, not the newest checkpoint
    assert model.checkpoint.name == "best.pt"
    assert int(model.head.steps) == PEAK
    assert float(model.head.weight.detach()) == pytest.approx(seen[PEAK])
    assert float(model.head.weight.detach()) != pytest.approx(seen[PEAK + 3])
    info = json.loads((tmp_path / "run" / "downstream.json").read_text())
    assert info["dev"]["metric"] == "score" and info["dev"]["dir"] == str(Path(corpus).resolve())


def test_without_early_stopping_the_last_step_is_the_model(corpus, tmp_path):
    result = train_downstream(
        ToyTask(), "fbank-raw", corpus, tmp_path / "run", settings(max_steps=8, early_stopping=False), valid_dir=corpus
    )
    assert result.step == 8 and result.best_step is None and not (tmp_path / "run" / "best.pt").exists()
    assert int(load_downstream(tmp_path / "run", device="cpu", task=ToyTask()).head.steps) == 8


def test_budget_stops_the_run_and_keeps_the_best(corpus, tmp_path):
    result = train_downstream(
        ToyTask(),
        "fbank-raw",
        corpus,
        tmp_path / "run",
        settings(budget_minutes=1e-6, max_steps=1000),
        valid_dir=corpus,
    )
    assert result.step < 1000 and "budget" in result.stopped_by
    assert result.best_step is not None and (tmp_path / "run" / "best.pt").is_file()


def test_held_out_part_is_used_when_no_valid_dir_is_given(corpus24, tmp_path):
    train_downstream(ToyTask(), "fbank-raw", corpus24, tmp_path / "run", settings(max_steps=6))
    run = tmp_path / "run"
    record = json.loads((run / "heldout.json").read_text())
    assert record["counts"] == {"train": 14, "dev": 10}  # at least heldout_min = 10 of 24
    assert json.loads((run / "downstream.json").read_text())["dev"]["dir"] == str((run / "heldout" / "dev").resolve())


def test_too_little_data_trains_without_early_stopping(corpus, tmp_path):
    result = train_downstream(ToyTask(), "fbank-raw", corpus, tmp_path / "run", settings(max_steps=4))
    assert result.step == 4 and result.best_step is None and not (tmp_path / "run" / "heldout.json").exists()
    assert "early stopping off" in json.loads((tmp_path / "run" / "downstream.json").read_text())["dev"]["note"]


def test_defaults_follow_the_data_size(corpus):
    durations = AudioDataset(corpus).durations
    config = DownstreamConfig(batch_seconds=4.0)
    resolved = resolve_defaults(config, ToyTask(), durations)
    batches = len(BucketBatchSampler(durations, 4.0, seed=0))
    assert resolved.max_steps == min(max(100 * batches, 500), 4000)
    assert resolved.lr == pytest.approx(min(max(1e-3 * math.sqrt(len(durations) / batches / 32), 1e-4), 1e-2))
    assert resolved.eval_every == max(1, resolved.max_steps // 20)
    assert (resolved.warmup_steps, resolved.schedule) == (0, "constant")  # the base task's warm-up and schedule

    class WarmTask(ToyTask):
        warmup_ratio, schedule, base_lr = 0.1, "cosine", 2e-3

    warm = resolve_defaults(config, WarmTask(), durations)
    assert warm.warmup_steps == round(0.1 * warm.max_steps) and warm.schedule == "cosine"
    assert warm.lr == pytest.approx(2 * resolved.lr)
    given = resolve_defaults(
        DownstreamConfig(max_steps=7, lr=0.5, eval_every=2, warmup_steps=3, schedule="linear"), WarmTask(), durations
    )
    assert (given.max_steps, given.lr, given.eval_every, given.warmup_steps, given.schedule) == (7, 0.5, 2, 3, "linear")


def test_lr_sweep_keeps_the_best_run(corpus, tmp_path):
    out = tmp_path / "sweep"
    config = settings(max_steps=4, lr_sweep=True, lr_grid=[0.01, 0.5], patience=10)

    class WeightTask(ToyTask):
        """Dev score = -|weight - 3|: the larger learning rate gets closer in four steps."""

        def dev_metrics(self, head, upstream, data_dir, state, batch_seconds=60.0):
            return {"score": -abs(float(head.weight) - 3.0), "loss": 0.0}

    result = train_downstream(WeightTask(), "fbank-raw", corpus, out, config, valid_dir=corpus)
    summary = json.loads((out / "lr-sweep.json").read_text())
    assert [row["lr"] for row in summary["runs"]] == [0.01, 0.5]
    assert summary["best"]["lr"] == 0.5 and result.run_dir == out
    scores = {row["lr"]: row["dev_score"] for row in summary["runs"]}
    assert scores[0.5] > scores[0.01]
    assert json.loads((out / "downstream.json").read_text())["config"]["lr"] == 0.5
    model = load_downstream(out, device="cpu", task=WeightTask())
    kept = torch.load(out / "lr-sweep" / "lr-5e-01" / "best.pt", weights_only=True)["head"]["weight"]
    assert torch.equal(model.head.weight.detach(), kept)
