"""One no-weight-decay rule: fine-tuning exempts exactly the parameters pretraining exempts."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from audiossl.downstream.unit import downstream_parameter_groups
from audiossl.downstream.upstream import load_upstream
from audiossl.engine import no_weight_decay
from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES
from audiossl.train import Trainer, pretrain, resolve_config

MAMBA = [
    *TINY_PRETRAIN_OVERRIDES,
    "encoder.overrides.d_state=4",
    "encoder.overrides.chunk_size=8",
    "run.max_steps=1",
    "run.device=cpu",
    "run.tensorboard=false",
]


def mamba_config():
    sets = [s for s in MAMBA if "num_heads" not in s and "conv_pos" not in s]  # not BiMamba settings
    return resolve_config("mspm-mamba-tiny", sets)


@pytest.fixture(scope="module")
def mamba_run(engine_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("mamba") / "run"
    pretrain(mamba_config(), [engine_corpus], run)
    return run


def exempt_names(named: list[tuple[str, nn.Parameter]], groups: list[dict]) -> tuple[set[str], set[str]]:
    """(names in groups with weight_decay 0, names in decayed groups), for the parameters in ``named``."""
    zero = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decayed = {id(p) for g in groups if g["weight_decay"] > 0.0 for p in g["params"]}
    return {n for n, p in named if id(p) in zero}, {n for n, p in named if id(p) in decayed}


def test_finetuning_exempts_the_same_encoder_parameters_as_pretraining(mamba_run, engine_corpus):
    trainer = Trainer(mamba_config(), [engine_corpus], mamba_run, resume=True)  # set up, not trained
    try:
        pretraining = exempt_names(list(trainer.objective.encoder.named_parameters()), trainer.optimizer.param_groups)
    finally:
        trainer.close()
    upstream = load_upstream(str(mamba_run), mode="finetune")
    encoder = upstream.encoder.encoder  # the BiMamba inside the trained-encoder bundle
    groups = downstream_parameter_groups(
        nn.Linear(upstream.dim, 3), upstream, lr=1e-3, upstream_lr=1e-4, weight_decay=0.01
    )
    finetuning = exempt_names(list(encoder.named_parameters()), groups)

    assert finetuning == pretraining
    exempt, decayed = finetuning
    assert any(name.endswith("A_log") for name in exempt) and any(name.endswith(".D") for name in exempt)
    assert any(name.endswith("bias") for name in exempt)
    assert decayed and not any(name.endswith(("A_log", "bias")) for name in decayed)
    a_log = next(p for n, p in encoder.named_parameters() if n.endswith("A_log"))
    assert a_log.ndim >= 2 and no_weight_decay(a_log)  # a matrix, exempt by its flag, not by its shape


def test_the_head_follows_the_same_rule(mamba_run):
    upstream = load_upstream(str(mamba_run), mode="frozen")
    head = nn.Sequential(nn.Linear(upstream.dim, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    groups = downstream_parameter_groups(head, upstream, lr=1e-3, upstream_lr=1e-4, weight_decay=0.01)
    exempt, decayed = exempt_names(list(head.named_parameters()), groups)
    assert decayed == {"0.weight", "2.weight"}
    assert exempt == {"0.bias", "1.weight", "1.bias", "2.bias"}
    featurizer = {id(p) for p in upstream.featurizer_parameters()}
    assert all(g["weight_decay"] == 0.0 for g in groups if {id(p) for p in g["params"]} & featurizer)
