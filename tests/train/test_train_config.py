"""Pretraining configs: presets, YAML files with line numbers in errors, overrides, schedules."""

from __future__ import annotations

import pytest
import torch

from audiossl.errors import ConfigError
from audiossl.train.config import (
    OptimConfig,
    config_from_dict,
    dump_config,
    encoder_config,
    list_presets,
    objective_config,
    resolve_config,
)
from audiossl.train.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups

PRESETS = [
    "dino-conformer-tiny",
    "hubert-conformer-tiny",
    "mspm-ast-tiny",
    "mspm-mamba-tiny",
    "speecht5-base",
    "speecht5-tiny",
    "w2vbert-conformer-tiny",
    "wav2vec2-conformer-tiny",
]


def test_shipped_presets_are_listed_and_resolve_to_what_their_name_says():
    names = [name for name, _ in list_presets()]
    assert names == sorted(names) and set(PRESETS) <= set(names)  # objectives of other issues add their own
    for name, description in list_presets():
        config = resolve_config(name)
        parts = name.removesuffix("-cpu").split("-")  # *-cpu: the CPU-budget variant of the preset
        objective, family, size = parts if len(parts) == 3 else (parts[0], parts[0], parts[1])  # speecht5-tiny
        assert config.objective.name == objective and config.encoder.family == family and config.encoder.preset == size
        assert description  # the YAML's first comment line
        # The encoder reads what the front-end gives (waveform encoders read no front-end).
        if encoder_config(config).input.kind == "waveform":
            assert config.data.frontend == "none"
            continue
        assert encoder_config(config).input.num_bins == config.data.frontend_config["num_mel_bins"]


@pytest.mark.parametrize("name", PRESETS)
def test_dumped_config_reads_back_equal(name, tmp_path):
    config = resolve_config(name, ["run.max_steps=7", "encoder.overrides.dim=96"])  # 96: every preset's heads divide it
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert resolve_config(path) == config


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, key, line",
    [
        ("run:\n  max_steps: 3\n  max_stpes: 4\n", "run.max_stpes", 3),
        ("data:\n  sample_rate: 8000\nencdoer:\n  family: ast\n", "encdoer", 3),
        (
            "encoder:\n  family: ast\n  overrides:\n    input:\n      num_binz: 80\n",
            "encoder.overrides.input.num_binz",
            5,
        ),
        (
            "objective:\n  name: mspm\n  config:\n    mask:\n      kind: random\n      cuont: 3\n",
            "objective.config.mask.cuont",
            6,
        ),
        (
            "data:\n  frontend: fbank\n  frontend_config:\n    num_mel_binz: 80\n",
            "data.frontend_config.num_mel_binz",
            4,
        ),
    ],
)
def test_unknown_keys_name_the_file_and_line(tmp_path, text, key, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    assert info.value.path == str(path) and info.value.line == line
    assert repr(key) in info.value.message


def test_wrong_types_and_values_name_the_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_config(write(tmp_path, "optim:\n  warmup_steps: 10\n  lr: fast\n"))
    assert info.value.line == 3 and "optim.lr" in info.value.message
    with pytest.raises(ConfigError) as info:
        resolve_config(write(tmp_path, "encoder:\n  overrides:\n    dim: wide\n"))
    assert info.value.line == 3
    with pytest.raises(ConfigError, match="unknown encoder 'nope'"):
        resolve_config(write(tmp_path, "encoder:\n  family: nope\n"))
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        resolve_config(write(tmp_path, "objective:\n  name: nope\n"))
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        resolve_config(write(tmp_path, "encoder:\n  preset: huge\n"))
    with pytest.raises(ConfigError, match="unknown config 'no-such-preset'"):
        resolve_config("no-such-preset")


def test_overrides_reach_free_form_sections_and_are_checked():
    config = resolve_config(
        "mspm-ast-tiny",
        ["encoder.overrides.num_layers=2", "objective.config.mask.ratio=0.5", "optim.betas=[0.8, 0.9]"],
    )
    assert encoder_config(config).num_layers == 2
    assert objective_config(config).mask.ratio == 0.5 and objective_config(config).mask.count == 400
    assert config.optim.betas == (0.8, 0.9)
    with pytest.raises(ConfigError, match="run.max_stepz"):
        resolve_config("mspm-ast-tiny", ["run.max_stepz=3"])
    with pytest.raises(ConfigError, match="encoder.overrides.num_layerz"):
        resolve_config("mspm-ast-tiny", ["encoder.overrides.num_layerz=3"])
    with pytest.raises(ConfigError, match="not key=value"):
        resolve_config("mspm-ast-tiny", ["run.max_steps"])


def test_cross_checks():
    with pytest.raises(ConfigError, match="sample_rate"):
        config_from_dict({"data": {"sample_rate": 8000, "frontend_config": {"sample_rate": 16000}}})
    with pytest.raises(ConfigError, match="learnable"):
        config_from_dict({"data": {"frontend": "wav2vec2_cnn"}})
    with pytest.raises(ConfigError, match="accumulation_steps"):
        config_from_dict({"optim": {"accumulation_steps": 0}})


def test_warmup_then_cosine_matches_torch_cosine_annealing():
    config = OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    max_steps = 20
    assert [lr_factor(s, config, max_steps) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # After the warm-up: torch's CosineAnnealingLR over the remaining steps, from lr to 0.1 lr.
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps - 4, eta_min=0.1)
    for step in range(4, max_steps + 1):
        assert lr_factor(step, config, max_steps) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-9)
        optimizer.step()
        reference.step()
    assert lr_factor(max_steps + 5, config, max_steps) == pytest.approx(0.1)


def test_linear_and_constant_schedules_and_the_scheduler_follows_lr_factor():
    linear = OptimConfig(lr=2.0, warmup_steps=0, schedule="linear", min_lr_ratio=0.0)
    assert [lr_factor(s, linear, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    constant = OptimConfig(warmup_steps=2, schedule="constant")
    assert [lr_factor(s, constant, 10) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 1.0]
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, linear)
    scheduler = build_scheduler(optimizer, linear, 4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2.0, 1.5, 1.0, 0.5])


def test_weight_decay_skips_biases_norms_and_flagged_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].weight._no_weight_decay = True  # as Mamba flags A_log
    decayed, plain = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and [p.shape for p in decayed["params"]] == [(4, 3)]
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 5
