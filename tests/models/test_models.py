"""The model package: the SpeechEncoder protocol, loading that reads a checkpoint once without its
optimizer state, init_from_checkpoint, and loading without importing training code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import audiossl
from audiossl.config import to_dict
from audiossl.encoders import create_encoder
from audiossl.errors import ConfigError
from audiossl.models import (
    FbankBaseline,
    InputPipeline,
    PretrainedEncoder,
    SpeechEncoder,
    encoder_config,
    init_from_checkpoint,
    load_pretrained,
    read_checkpoint,
)
from audiossl.testing.configs import tiny_encoder_config
from audiossl.train.checkpoint import save_checkpoint
from audiossl.train.config import config_from_dict, frontend_settings, plain

RATE = 16000


def write_run(run_dir: Path, step: int = 3) -> Path:
    """A run dir holding one checkpoint in the trainer's layout, optimizer state included."""
    config = config_from_dict(
        {
            "data": {"sample_rate": RATE, "frontend_config": {"num_mel_bins": 32}, "normalize": "utterance"},
            "encoder": {"family": "ast", "overrides": plain(to_dict(tiny_encoder_config("ast", "frame")))},
            "objective": {"name": "mspm"},
        }
    )
    settings = encoder_config(config)
    torch.manual_seed(0)
    encoder = create_encoder("ast", config=settings)
    inputs = InputPipeline(config.data, frontend_settings(config))
    state = {
        "format": 1,
        "step": step,
        "model": {f"encoder.{key}": value for key, value in encoder.state_dict().items()},
        "inputs": inputs.state_dict(),
        "config": plain(to_dict(config)),  # the whole pretraining config, as every checkpoint holds it
        "encoder": {"family": "ast", "config": plain(to_dict(settings))},
        "optimizer": {"state": {0: {"exp_avg": torch.randn(256, 256), "exp_avg_sq": torch.rand(256, 256)}}},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(state, run_dir / f"ckpt-{step:08d}.pt")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("models") / "run"
    write_run(run)
    return run


def count_loads(monkeypatch) -> list[dict]:
    """Record the keyword arguments of every torch.load call."""
    calls: list[dict] = []
    real = torch.load

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return calls


@pytest.mark.parametrize("which", ["run dir", "file"])
def test_load_reads_the_checkpoint_once_memory_mapped(run_dir, which, monkeypatch):
    path = run_dir if which == "run dir" else next(run_dir.glob("ckpt-*.pt"))
    calls = count_loads(monkeypatch)
    model = audiossl.load(path, device="cpu")
    assert isinstance(model, PretrainedEncoder) and isinstance(model, SpeechEncoder)
    assert len(calls) == 1, "the checkpoint file is read once"
    assert calls[0].get("mmap") is True and calls[0].get("weights_only") is True


def test_model_loading_never_takes_the_optimizer_state(run_dir, monkeypatch):
    checkpoint = next(run_dir.glob("ckpt-*.pt"))
    assert "optimizer" not in read_checkpoint(checkpoint, keys=("model", "config"))
    assert set(read_checkpoint(checkpoint, keys=("model",))) == {"format", "model"}
    assert "optimizer" in read_checkpoint(checkpoint)  # everything when no keys are named
    taken: list[set[str]] = []
    from audiossl.models import pretrained

    real = pretrained.pretrained_from_state

    def spy(state, **kwargs):
        taken.append(set(state))
        return real(state, **kwargs)

    monkeypatch.setattr(pretrained, "pretrained_from_state", spy)
    calls = count_loads(monkeypatch)
    load_pretrained(run_dir)
    assert len(calls) == 1 and calls[0].get("mmap") is True
    assert taken == [{"format", "config", "encoder", "model", "inputs"}]


def test_loaded_model_equals_the_weights_it_was_saved_with(run_dir):
    checkpoint = next(run_dir.glob("ckpt-*.pt"))
    model = load_pretrained(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)["model"]
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, saved[f"encoder.{name}"])
    assert model.config.data.sample_rate == RATE and model.config.encoder.family == "ast"


def _check_protocol(model: SpeechEncoder, seconds: tuple[float, float] = (1.0, 0.6)) -> None:
    lengths = torch.tensor([round(s * model.sample_rate) for s in seconds])
    waveforms = 0.1 * torch.randn(2, int(lengths.max()), generator=torch.Generator().manual_seed(0))
    waveforms[1, int(lengths[1]) :] = 0.0
    with torch.no_grad():
        output = model.eval()(waveforms, lengths).without_prefix()
    assert len(output.layers) == model.num_layers
    assert output.last.shape[-1] == model.dim and all(layer.shape[-1] == model.dim for layer in output.layers)
    assert output.last.shape[0] == 2 and output.lengths.shape == (2,)
    for item, second in enumerate(seconds):
        assert abs(int(output.lengths[item]) - model.frame_rate * second) <= 3  # edge frames of the front-end


def test_protocol_is_implemented_by_audiossl_checkpoints_and_fbank_baselines(run_dir):
    pretrained = load_pretrained(run_dir)
    fbank = FbankBaseline(8000, 40)
    for model in (pretrained, fbank):
        assert isinstance(model, SpeechEncoder)
        assert isinstance(model.sample_rate, int) and isinstance(model.dim, int)
        assert isinstance(model.num_layers, int) and isinstance(model.frame_rate, float)
        _check_protocol(model)
    assert (fbank.sample_rate, fbank.dim, fbank.num_layers, fbank.frame_rate) == (8000, 40, 1, 100.0)
    assert pretrained.num_layers == 2 and pretrained.sample_rate == RATE
    with pytest.raises(TypeError):
        SpeechEncoder()  # forward is abstract


def test_init_from_checkpoint_loads_weights_and_names_what_does_not_fit(run_dir, tmp_path):
    model = load_pretrained(run_dir)
    fresh = load_pretrained(run_dir, random_init=True, seed=5)
    pairs = lambda: zip(fresh.encoder.parameters(), model.encoder.parameters(), strict=True)  # noqa: E731
    assert not all(torch.equal(a, b) for a, b in pairs())
    init_from_checkpoint(fresh.encoder, run_dir, prefix="encoder.")
    assert all(torch.equal(a, b) for a, b in pairs())

    class WithHead(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.cluster = torch.nn.Linear(2, 2)

    init_from_checkpoint(WithHead(fresh.encoder), run_dir, exclude=("cluster.",))
    with pytest.raises(ConfigError, match="does not fit this model: missing"):
        init_from_checkpoint(WithHead(fresh.encoder), run_dir)


def test_loading_a_model_does_not_import_training_code():
    code = (
        "import sys, audiossl.models, audiossl.embed, audiossl.downstream.upstream, audiossl.cluster.pipeline, "
        "audiossl.export, audiossl.data.backends\n"
        "loaded = sorted(m for m in sys.modules if m == 'audiossl.train' or m.startswith('audiossl.train.'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_checkpoints_torch_cannot_memory_map_are_read_whole(tmp_path):
    """Files written without the zip format (older torch.save settings) still load."""
    path = tmp_path / "legacy.pt"
    state = {"format": 1, "model": {"w": torch.ones(2)}, "optimizer": {}}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert set(read_checkpoint(path, keys=("model",))) == {"format", "model"}
