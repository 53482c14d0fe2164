"""Extensions: a third-party distribution registers an encoder and an objective through the
``audiossl.extensions`` entry points; they pretrain through the normal config path; broken
extensions are reported by name while the others keep working, and strict mode makes them fatal.

The distribution is "installed" the way pip lays it out (a dist-info on ``sys.path``), with the
helper the downstream plugin tests use (:mod:`audiossl.testing.distributions`).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.data.kaldi import DataDir
from audiossl.encoders import ENCODERS, create_encoder
from audiossl.entrypoints import STRICT_ENV
from audiossl.extensions import ENTRY_POINT_GROUP, ExtensionError, load_extensions, loaded_extensions
from audiossl.objectives import OBJECTIVES, create_objective
from audiossl.testing.distributions import install_distribution

THIRDPARTY = Path(__file__).resolve().parent / "thirdparty"
DIST = "audiossl-toy-extension"
ENTRY_POINTS = f"""[{ENTRY_POINT_GROUP}]
toy = audiossl_toy
broken = audiossl_missing_extension
clash = audiossl_toy_clash:register
"""
MODULES = ("audiossl_toy", "audiossl_toy_clash")


def ours() -> list[metadata.EntryPoint]:
    """The fake distribution's entry points among everything installed."""
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == DIST]


def forget_toy() -> None:
    """Unregister what the toy extension registered and unimport it (tests stay independent)."""
    for registry, name in ((ENCODERS, "toy"), (OBJECTIVES, "toy_regression")):
        if name in registry._items:
            registry.unregister(name)
    for module in MODULES:
        sys.modules.pop(module, None)


@pytest.fixture
def toy_site(tmp_path, monkeypatch):
    site = install_distribution(
        tmp_path / "site", DIST, "0.1.0", ENTRY_POINTS, [THIRDPARTY / f"{module}.py" for module in MODULES]
    )
    monkeypatch.syspath_prepend(str(site))
    forget_toy()
    yield site
    forget_toy()


def test_toy_extension_registers_and_broken_ones_are_reported_by_name(toy_site, caplog, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "0")
    with caplog.at_level(logging.WARNING):
        extensions, errors = load_extensions(ours())
    assert extensions == {"toy": DIST}
    by_name = {error.name: error for error in errors}
    assert sorted(by_name) == ["broken", "clash"]
    assert "ModuleNotFoundError" in by_name["broken"].error and "audiossl_missing_extension" in by_name["broken"].error
    assert "already registered" in by_name["clash"].error and by_name["clash"].distribution == DIST
    assert "'broken'" in caplog.text and "'clash'" in caplog.text and STRICT_ENV in caplog.text
    assert loaded_extensions() == (extensions, errors)
    # The others keep working: the built-in "ast" is untouched and the toy components build by name.
    assert ENCODERS.get("ast").config_class.__name__ == "ASTConfig"
    encoder = create_encoder("toy")
    objective = create_objective("toy_regression", encoder)
    assert objective.encoder is encoder and "toy" in ENCODERS.names() and "toy_regression" in OBJECTIVES


def test_strict_mode_makes_a_broken_extension_fatal(toy_site, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(ExtensionError, match="extension 'broken'"):
        load_extensions(ours())


def write_data_dir(root: Path, seconds: list[float]) -> Path:
    """A data dir of noisy tones."""
    rng = np.random.default_rng(0)
    data = DataDir(utt2dur={})
    for i, duration in enumerate(seconds):
        utt = f"utt{i:02d}"
        samples = round(duration * 16000)
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * np.arange(samples) / 16000)
        wave = wave + 0.05 * rng.standard_normal(samples)
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave.astype(np.float32), 16000)
        data.wav_scp[utt] = str(path)
        data.utt2spk[utt] = "spk"
        data.utt2dur[utt] = samples / 16000
    data.save(root / "data")
    return root / "data"


def test_toy_encoder_and_objective_pretrain_through_the_config(toy_site, tmp_path, monkeypatch):
    from audiossl.train import pretrain
    from audiossl.train.config import config_from_dict

    monkeypatch.setenv(STRICT_ENV, "0")
    load_extensions(ours(), warn=False)
    config = config_from_dict(
        {
            "data": {
                "sample_rate": 16000,
                "max_seconds_per_batch": 2.0,
                "num_workers": 0,
                "frontend": "fbank",
                "frontend_config": {"num_mel_bins": 32},
                "normalize": "utterance",
            },
            "encoder": {"family": "toy", "preset": "tiny", "overrides": {"dim": 32}},
            "objective": {"name": "toy_regression", "config": {"mask_ratio": 0.4}},
            "optim": {"lr": 1.0e-3, "warmup_steps": 1},
            "run": {"max_steps": 2, "device": "cpu", "log_every": 1, "checkpoint_every": 2, "tensorboard": False},
        }
    )
    data_dir = write_data_dir(tmp_path / "corpus", [0.8, 0.6, 0.7])
    result = pretrain(config, [data_dir], tmp_path / "run")
    assert result.step == 2 and result.stopped_by is None and math.isfinite(result.loss_ema)
    assert result.checkpoint is not None and result.checkpoint.is_file()


def _python(site: Path, code: str, strict: bool) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh process that sees the fake distribution."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env[STRICT_ENV] = "1" if strict else "0"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_the_first_registry_lookup_loads_extensions(toy_site):
    code = (
        "import logging; logging.basicConfig()\n"
        "from audiossl.objectives import create_objective\n"
        "from audiossl.encoders import create_encoder\n"
        "print(type(create_objective('toy_regression', create_encoder('toy'))).__name__)\n"
    )
    lazy = _python(toy_site, code, strict=False)
    assert lazy.returncode == 0, lazy.stderr
    assert lazy.stdout.strip() == "ToyRegression"
    assert "'broken'" in lazy.stderr and "'clash'" in lazy.stderr  # reported, not fatal
    strict = _python(toy_site, code, strict=True)
    assert strict.returncode != 0 and "ExtensionError" in strict.stderr and "'broken'" in strict.stderr
