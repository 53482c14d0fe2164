"""Exact resume, stops on request and on signals, and the run-dir safety rules."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import torch
from train_helpers import parameters, tiny_config

from audiossl.engine.logging import read_records
from audiossl.errors import ConfigError
from audiossl.train import pretrain
from audiossl.train.checkpoint import checkpoint_path, list_checkpoints


def stop_at(step: int):
    def callback(trainer) -> None:
        if trainer.step == step:
            trainer.request_stop()

    return callback


CASES = {
    # Stand-in with dropout in the encoder and noise from torch's global generator: exercises the saved
    # random states as well as the per-batch mask generator.
    "standin": {"objective": {"config": {"noise": 0.1}}, "encoder": {"overrides": {"dropout": 0.1}}},
    # A real objective: SSAST masking from the per-batch generator.
    "mspm": {"objective": {"name": "mspm", "config": {"mask": {"kind": "chunk", "ratio": 0.5}}}},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stop_and_resume_equals_uninterrupted_run(case, varied_dir, tmp_path, caplog):
    config = tiny_config(**CASES[case])
    straight = pretrain(config, [varied_dir], tmp_path / "straight")
    assert straight.step == 6 and straight.stopped_by is None

    first = pretrain(config, [varied_dir], tmp_path / "split", callbacks=[stop_at(3)])
    assert first.stopped_by == "request" and first.step == 3
    assert checkpoint_path(tmp_path / "split", 3).is_file()  # written on stop, off the every-2 schedule
    with caplog.at_level(logging.INFO, logger="audiossl.train"):
        second = pretrain(config, [varied_dir], tmp_path / "split", resume=True)
    assert second.step == 6
    assert f"resuming from step 3 of {checkpoint_path(tmp_path / 'split', 3)}" in caplog.text

    expected, got = parameters(tmp_path / "straight", 6), parameters(tmp_path / "split", 6)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    # The weights did move: the comparison is not between two untouched initialisations.
    initial = parameters(tmp_path / "straight", 2)
    assert any(not torch.equal(initial[name], expected[name]) for name in expected)


def test_resume_across_epochs_with_accumulation_equals_straight_run(varied_dir, tmp_path):
    # 2 batches per epoch, 2 micro-batches per step: every step is one epoch; stop after step 1.
    config = tiny_config(optim={"accumulation_steps": 2}, run={"max_steps": 3})
    pretrain(config, [varied_dir], tmp_path / "a")
    pretrain(config, [varied_dir], tmp_path / "b", callbacks=[stop_at(1)])
    pretrain(config, [varied_dir], tmp_path / "b", resume=True)
    for name, value in parameters(tmp_path / "a", 3).items():
        torch.testing.assert_close(parameters(tmp_path / "b", 3)[name], value, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_after_the_step_with_a_checkpoint(sig, varied_dir, tmp_path):
    before = signal.getsignal(sig)

    def send(trainer) -> None:
        if trainer.step == 3:
            os.kill(os.getpid(), sig)

    config = tiny_config(run={"checkpoint_every": 100})
    result = pretrain(config, [varied_dir], tmp_path / "run", callbacks=[send])
    assert result.stopped_by == signal.Signals(sig).name
    assert result.step == 3
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [3]
    assert signal.getsignal(sig) is before  # handlers are put back


def test_existing_run_needs_resume(varied_dir, tmp_path):
    config = tiny_config(run={"max_steps": 2})
    pretrain(config, [varied_dir], tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        pretrain(config, [varied_dir], tmp_path / "run")


class Killed(Exception):
    """Stands for a SIGKILL: the run ends at once, with no checkpoint written on the way out."""


def kill_at(step: int):
    def callback(trainer) -> None:
        if trainer.step == step:
            raise Killed(f"killed at step {step}")

    return callback


def test_run_killed_before_its_first_checkpoint_resumes_from_step_0(varied_dir, tmp_path, caplog):
    config = tiny_config(run={"max_steps": 4, "checkpoint_every": 100})
    straight = pretrain(config, [varied_dir], tmp_path / "straight")
    run = tmp_path / "run"
    with pytest.raises(Killed):
        pretrain(config, [varied_dir], run, callbacks=[kill_at(3)])
    assert list_checkpoints(run) == [] and (run / "train.jsonl").is_file()  # killed before its first checkpoint
    with caplog.at_level(logging.INFO, logger="audiossl"):
        resumed = pretrain(config, [varied_dir], run, resume=True)
    assert f"resume: no checkpoint (ckpt-*.pt) in {run} yet" in caplog.text and "from step 0" in caplog.text
    assert resumed.step == straight.step == 4
    # Every step is logged once (the killed run's records were cut), and training is the uninterrupted run's.
    steps = [record["step"] for record in read_records(run / "train.jsonl", "train")]
    assert steps == [1, 2, 3, 4]
    for name, value in parameters(tmp_path / "straight", 4).items():
        torch.testing.assert_close(parameters(run, 4)[name], value, rtol=0, atol=1e-6, msg=name)
