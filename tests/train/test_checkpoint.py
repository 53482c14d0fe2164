"""Checkpoints: atomic saves that survive a crash, pruning, NaN stops, weights_only loading, RNG round trips."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from train_helpers import parameters, tiny_config

import audiossl.train.checkpoint as checkpoint_module
from audiossl.errors import DataError
from audiossl.train import NonFiniteLossError, pretrain
from audiossl.train.checkpoint import (
    NonFiniteWeightsError,
    assert_finite,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)


def test_crash_during_save_keeps_the_previous_checkpoint(varied_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_save = torch.save

    def crashing_save(state, path, *args, **kwargs):
        if state["step"] == 4:
            with open(path, "wb") as handle:  # half a file, then the "crash"
                handle.write(b"PK\x03\x04 partial")
            raise OSError("No space left on device")
        real_save(state, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", crashing_save)
    with pytest.raises(OSError, match="No space left"):
        pretrain(tiny_config(), [varied_dir], run_dir)
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)

    assert [step for step, _ in list_checkpoints(run_dir)] == [2]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    state = load_checkpoint(checkpoint_path(run_dir, 2))
    assert state["step"] == 2
    # And the run continues from it.
    result = pretrain(tiny_config(), [varied_dir], run_dir, resume=True)
    assert result.step == 6


def test_a_killed_save_leaves_only_a_hidden_temporary_that_resume_cleans(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    pretrain(tiny_config(run={"max_steps": 2}), [varied_dir], run_dir)
    stale = run_dir / ".ckpt-00000004.pt.x1y2z3.pt"  # what atomic_path leaves when SIGKILLed mid-write
    stale.write_bytes(b"garbage")
    assert [step for step, _ in list_checkpoints(run_dir)] == [2]
    pretrain(tiny_config(run={"max_steps": 4}), [varied_dir], run_dir, resume=True)
    assert not stale.exists()


def test_keep_last_n_and_best(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = pretrain(tiny_config(run={"max_steps": 7, "checkpoint_every": 1, "keep_last": 3}), [varied_dir], run_dir)
    assert [step for step, _ in list_checkpoints(run_dir)] == [5, 6, 7]
    assert result.best == run_dir / "best.pt"
    best = load_checkpoint(result.best)
    assert best["trainer"]["best_step"] == best["step"]
    assert best["trainer"]["best"] == pytest.approx(min_ema(run_dir))


def min_ema(run_dir):
    from audiossl.train.logging import read_records

    return min(record["loss_ema"] for record in read_records(run_dir / "train.jsonl"))


def test_prune_checkpoints_keeps_the_newest(tmp_path):
    for step in (1, 20, 3, 100):
        checkpoint_path(tmp_path, step).write_bytes(b"x")
    (tmp_path / "best.pt").write_bytes(b"x")
    removed = prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["ckpt-00000001.pt", "ckpt-00000003.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "ckpt-00000020.pt", "ckpt-00000100.pt"]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(objective={"config": {"nan_at_step": 4}})  # the 5th step (4 done)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 5") as info:
        pretrain(config, [varied_dir], run_dir)
    assert str(checkpoint_path(run_dir, 4)) in str(info.value)
    assert [step for step, _ in list_checkpoints(run_dir)] == [2, 4]
    weights = parameters(run_dir, 4)
    assert all(torch.isfinite(value).all() for value in weights.values())


def test_non_finite_weights_are_never_checkpointed():
    module = torch.nn.Linear(2, 2)
    assert_finite(module)
    with torch.no_grad():
        module.weight[0, 0] = math.inf
    with pytest.raises(NonFiniteWeightsError, match="weight"):
        assert_finite(module)


def test_checkpoint_loads_with_weights_only_and_rejects_foreign_files(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    pretrain(tiny_config(run={"max_steps": 2}), [varied_dir], run_dir)
    path = checkpoint_path(run_dir, 2)
    state = torch.load(path, weights_only=True)  # no pickled objects anywhere
    assert {"model", "optimizer", "scheduler", "data", "rng", "config", "encoder", "inputs"} <= set(state)
    assert (state["data"]["epoch"], state["data"]["position"]) == (0, 2)  # both batches of epoch 0 done
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(DataError, match="not an audiossl checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="not an audiossl checkpoint readable as plain data"):
        load_checkpoint(truncated)


def test_rng_states_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.random(), np.random.normal(), torch.rand(1)  # noqa: B018  (leave a cached gaussian in numpy)
    state = rng_state()
    expected = (random.random(), np.random.normal(), float(torch.rand(1)))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(state)
    assert (random.random(), np.random.normal(), float(torch.rand(1))) == expected
