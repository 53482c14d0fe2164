"""run.init_from: a new run starts from another run's weights (not on --resume); target heads stay fresh."""

from __future__ import annotations

import pytest
import torch
from train_helpers import parameters, tiny_config

from audiossl.errors import ConfigError
from audiossl.train import pretrain
from audiossl.train.trainer import Trainer


def test_a_new_run_starts_from_the_weights_of_another(varied_dir, tmp_path):
    first = pretrain(tiny_config(run={"max_steps": 2, "checkpoint_every": 2}), [varied_dir], tmp_path / "first")
    trained = parameters(tmp_path / "first", first.step)
    config = tiny_config(run={"max_steps": 2, "checkpoint_every": 2, "init_from": str(tmp_path / "first")})
    second = Trainer(config, [varied_dir], tmp_path / "second")
    try:
        start = second.objective.state_dict()
        assert set(start) == set(trained)
        for name, value in trained.items():
            assert torch.equal(start[name].cpu(), value), name
    finally:
        second.close()
    fresh = Trainer(tiny_config(run={"max_steps": 2}), [varied_dir], tmp_path / "fresh")
    try:
        assert any(not torch.equal(fresh.objective.state_dict()[n].cpu(), v) for n, v in trained.items())
    finally:
        fresh.close()


def test_init_from_refuses_weights_that_do_not_fit(varied_dir, tmp_path):
    pretrain(tiny_config(run={"max_steps": 1, "checkpoint_every": 1}), [varied_dir], tmp_path / "first")
    wider = {"encoder": {"overrides": {"dim": 64}}, "run": {"init_from": str(tmp_path / "first")}}
    with pytest.raises((ConfigError, RuntimeError)):
        Trainer(tiny_config(**wider), [varied_dir], tmp_path / "second").close()
