"""Warm-up that scales with the run: ``optim.warmup_ratio`` of ``run.max_steps`` unless ``warmup_steps`` is set.

Old configs (``warmup_steps: N``) keep their meaning; the shipped presets keep the warm-up they had
at their own length, and a 300-step run of a preset no longer spends its whole length warming up.
"""

from __future__ import annotations

import logging

import pytest

from audiossl.engine.logging import read_records
from audiossl.errors import ConfigError
from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES
from audiossl.train import list_presets, pretrain, resolve_config
from audiossl.train.config import DEFAULT_WARMUP_RATIO, OptimConfig, config_from_dict

#: The warm-up of the presets shipped before the ratio (1000 of 20000 steps; speecht5-base 64000 of 800000).
OLD_WARMUP = {
    "dino-conformer-tiny": 1000,
    "hubert-conformer-tiny": 1000,
    "mspm-ast-tiny": 1000,
    "mspm-mamba-tiny": 1000,
    "speecht5-base": 64000,
    "speecht5-tiny": 1000,
    "w2vbert-conformer-tiny": 1000,
    "wav2vec2-conformer-tiny": 1000,
}


def test_ratio_scales_and_explicit_steps_win():
    assert OptimConfig().warmup_for(300) == round(DEFAULT_WARMUP_RATIO * 300) == 24
    assert OptimConfig(warmup_ratio=0.1).warmup_for(20000) == 2000
    assert OptimConfig(warmup_ratio=0.1).warmup_for(3) == 1  # at least one step when a ratio is set
    assert OptimConfig(warmup_ratio=0.0).warmup_for(300) == 0
    assert OptimConfig(warmup_steps=50, warmup_ratio=0.1).warmup_for(300) == 50
    assert OptimConfig(warmup_steps=0).warmup_for(300) == 0


def test_old_configs_stay_valid():
    config = config_from_dict({"optim": {"warmup_steps": 1000}, "run": {"max_steps": 20000}})
    assert config.optim.warmup_for(config.run.max_steps) == 1000
    with pytest.raises(ConfigError, match="warmup_ratio must be in"):
        config_from_dict({"optim": {"warmup_ratio": 1.5}})
    with pytest.raises(ConfigError, match="warmup_steps must be >= 0"):
        config_from_dict({"optim": {"warmup_steps": -1}})


@pytest.mark.parametrize("name", [name for name, _ in list_presets()])
def test_presets_keep_their_length_and_scale_down(name):
    config = resolve_config(name)
    assert config.optim.warmup_steps is None  # every shipped preset scales its warm-up with the run
    if name in OLD_WARMUP:
        assert config.optim.warmup_for(config.run.max_steps) == OLD_WARMUP[name]
    short = resolve_config(name, ["run.max_steps=300"])
    assert 1 <= short.optim.warmup_for(300) <= 30  # at most 10% of a 300-step run


def run(tmp_path, corpus, *overrides):
    config = resolve_config("mspm-ast-tiny", [*TINY_PRETRAIN_OVERRIDES, "run.checkpoint_every=100", *overrides])
    pretrain(config, [corpus], tmp_path)
    return [record for record in read_records(tmp_path / "train.jsonl") if record.get("kind") == "train"]


def test_the_engine_warms_up_for_the_ratio_of_the_run(engine_corpus, tmp_path):
    records = run(tmp_path / "run", engine_corpus, "run.max_steps=8", "optim.warmup_ratio=0.5", "optim.lr=1e-3")
    # Linear warm-up over W steps from lr / W: after the first update the schedule is at 2 / W of the peak.
    warmup = round(2 * 1e-3 / records[0]["lr"])
    assert warmup == 4
    lrs = [record["lr"] for record in records]
    assert max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == warmup - 2  # peak after W - 1 updates
    assert lrs[-1] < lrs[warmup]  # then the cosine decays


def test_a_warmup_as_long_as_the_run_is_warned_about(engine_corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        run(tmp_path / "run", engine_corpus, "run.max_steps=2", "optim.warmup_steps=1000")
    assert "the lr warm-up (1000 steps) is 50000% of the run (2 steps)" in caplog.text
