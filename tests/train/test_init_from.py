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


def test_target_heads_stay_fresh_when_the_number_of_clusters_changes(tmp_path):
    from audiossl.encoders import create_encoder
    from audiossl.models.checkpoint import CHECKPOINT_FORMAT
    from audiossl.objectives import create_objective
    from audiossl.testing.configs import tiny_encoder_config
    from audiossl.train.targets import init_objective

    def hubert(k: int):
        torch.manual_seed(k)
        encoder = create_encoder("conformer", config=tiny_encoder_config("conformer", "frame"))
        return create_objective("hubert", encoder, {"num_clusters": k, "code_dim": 8})

    previous, following = hubert(6), hubert(9)
    torch.save({"format": CHECKPOINT_FORMAT, "model": previous.state_dict()}, tmp_path / "ckpt-00000004.pt")
    fresh_codewords = following.codewords.detach().clone()
    assert init_objective(following, tmp_path) == tmp_path / "ckpt-00000004.pt"
    for name, value in previous.encoder.state_dict().items():
        assert torch.equal(following.encoder.state_dict()[name], value), name
    assert torch.equal(following.projection.weight, previous.projection.weight)
    assert following.codewords.shape == (9, 8) and torch.equal(following.codewords, fresh_codewords)
