"""The ``*-cpu`` presets are the settings the docs/results.md evidence used, read from the evidence scripts.

Reference: the overrides that bench/ssl_evidence.py, bench/hubert_evidence.py and
bench/dino_evidence.py apply to the full presets (imported from those scripts, not restated
here), with the step counts their calibrations reached (the tables of docs/results.md). Each
``-cpu`` preset plus the FSDD input settings its header names must resolve to the same config,
apart from bookkeeping that does not change what is learned (logging, checkpoints, device,
loader workers, where the statistics file lives, the wall-clock guard, a 10 s crop no FSDD digit
reaches).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from audiossl.config import to_dict
from audiossl.train import list_presets, resolve_config

BENCH = Path(__file__).resolve().parents[2] / "bench"

#: What the -cpu headers tell FSDD users to add (8 kHz audio, 64 bins).
FSDD = ["data.sample_rate=8000", "data.frontend_config.num_mel_bins=64", "encoder.overrides.input.num_bins=64"]

#: Steps of the evidence runs (docs/results.md tables: issue 4, HuBERT per iteration, DINO).
STEPS = {
    "mspm-ast-tiny": 3304,
    "mspm-mamba-tiny": 808,
    "wav2vec2-conformer-tiny": 2416,
    "w2vbert-conformer-tiny": 2261,
    "hubert-conformer-tiny": 1610,
    "dino-conformer-tiny": 504,
}

#: Keys that are bookkeeping, not training settings.
IGNORED = {
    ("run", "log_every"),
    ("run", "checkpoint_every"),
    ("run", "tensorboard"),
    ("run", "device"),
    ("run", "max_minutes"),
    ("data", "num_workers"),
    ("data", "global_stats"),
    ("data", "max_utt_seconds"),
    ("optim", "warmup_steps"),  # compared as the resolved warm-up length below
    ("optim", "warmup_ratio"),
}


def bench_module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def evidence_overrides(base: str, steps: int) -> list[str]:
    """The overrides the evidence script of ``base`` applied, with a dummy statistics path."""
    stats = Path("stats.npz")
    if base == "dino-conformer-tiny":
        return bench_module("dino_evidence").overrides(stats, steps)
    if base == "hubert-conformer-tiny":
        hubert = bench_module("hubert_evidence")
        return [*hubert.overrides(4, Path(".")), f"run.max_steps={steps}", f"optim.warmup_steps={max(steps // 10, 5)}"]
    ssl = bench_module("ssl_evidence")
    name = {
        "mspm-ast-tiny": "mspm-ast",
        "mspm-mamba-tiny": "mspm-mamba",
        "wav2vec2-conformer-tiny": "wav2vec2-conformer",
        "w2vbert-conformer-tiny": "w2vbert-conformer",
    }[base]
    _, sets = ssl.run_overrides(name, 4, stats)
    return [*sets, f"run.max_steps={steps}", f"optim.warmup_steps={max(steps // 10, 5)}"]


def flat(config) -> dict[tuple[str, str], object]:
    return {(section, key): value for section, values in to_dict(config).items() for key, value in values.items()}


def test_every_cpu_preset_has_a_base_with_evidence_and_is_listed():
    names = [name for name, _ in list_presets()]
    cpu = sorted(name for name in names if name.endswith("-cpu"))
    assert {f"{base}-cpu" for base in STEPS} <= set(cpu)  # newer objectives add their own -cpu presets
    assert all(name.removesuffix("-cpu") in names for name in cpu)
    for name in cpu:  # every -cpu preset is a budget run: a wall-clock guard and far fewer steps than its base
        config, base = resolve_config(name), resolve_config(name.removesuffix("-cpu"))
        assert config.run.max_minutes is not None and config.run.max_steps < base.run.max_steps


@pytest.mark.parametrize("base", sorted(STEPS))
def test_cpu_preset_equals_the_evidence_settings(base):
    preset = resolve_config(f"{base}-cpu", FSDD)
    evidence = resolve_config(base, evidence_overrides(base, STEPS[base]))
    got, expected = flat(preset), flat(evidence)
    differ = {key: (got[key], expected[key]) for key in expected if key not in IGNORED and got[key] != expected[key]}
    assert differ == {}
    assert preset.optim.warmup_for(preset.run.max_steps) == evidence.optim.warmup_for(evidence.run.max_steps)
    assert preset.run.max_minutes == 15.0


@pytest.mark.parametrize("base", sorted(STEPS))
def test_cpu_preset_differs_from_its_base(base):
    """Not a vacuous comparison: the evidence changed real settings of the full preset."""
    full, cpu = flat(resolve_config(base)), flat(resolve_config(f"{base}-cpu"))
    assert full[("run", "max_steps")] == 20000 and cpu[("run", "max_steps")] == STEPS[base]
    assert cpu[("encoder", "overrides")]["num_layers"] == 4 and "num_layers" not in full[("encoder", "overrides")]
    assert cpu[("optim", "lr")] == 1.0e-3 != full[("optim", "lr")]
