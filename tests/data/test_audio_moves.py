"""What moved from audiossl.audio up to audiossl.data: the audio layer reads no data dir, old paths still resolve."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from audiossl.audio.corrupt import CorruptConfig, WaveformCorruptor
from audiossl.errors import ConfigError

MOVED = [
    ("audiossl.audio.io", "load_utterance", "audiossl.data.wav_scp"),
    ("audiossl.audio.io", "read_wav_scp_entry", "audiossl.data.wav_scp"),
    ("audiossl.audio.io", "read_wav_scp_info", "audiossl.data.wav_scp"),
    ("audiossl.audio.corrupt", "Corruptor", "audiossl.data.corrupt"),
    ("audiossl.audio.normalize", "compute_global_stats", "audiossl.data.features"),
    ("audiossl.audio", "compute_global_stats", "audiossl.data.features"),
    ("audiossl.audio.features", "utterance_features", "audiossl.data.features"),
]


def test_importing_every_audio_module_loads_nothing_of_data():
    script = (
        "import pkgutil, importlib, sys, audiossl.audio as audio\n"
        "for info in pkgutil.iter_modules(audio.__path__):\n"
        "    importlib.import_module('audiossl.audio.' + info.name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('audiossl.data')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_old_paths_resolve_to_the_new_objects_with_a_deprecation_warning(old, name, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"moved to {new}.{name}"):
        found = getattr(importlib.import_module(old), name)
    assert found is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        importlib.import_module(old).no_such_name  # noqa: B018


def test_waveform_corruptor_takes_its_noise_source_from_the_caller():
    hum = torch.sin(torch.arange(4000) * 0.3)  # (T,)
    config = CorruptConfig(noise_prob=1.0, reverb_prob=0.0, snr_db=(0.0, 0.0))
    corrupt = WaveformCorruptor(config, 16000, noises=[hum])
    clean = 0.01 * torch.randn(1, 3000, generator=torch.Generator().manual_seed(0))
    out = corrupt(clean, torch.tensor([3000]), torch.Generator().manual_seed(1))
    added = out - clean
    assert float(added.square().mean()) == pytest.approx(float(clean.square().mean()), rel=1e-3)  # 0 dB of the hum


@pytest.mark.parametrize(
    ("settings", "missing"),
    [({"noise_dir": "noise"}, "noises"), ({"rir_dir": "rirs", "noise_kinds": ("white",)}, "rirs"), ({}, "voices")],
)
def test_waveform_corruptor_names_the_sources_it_lacks(settings, missing):
    with pytest.raises(ConfigError, match=f"needs {missing}.*audiossl.data.corrupt.Corruptor"):
        WaveformCorruptor(CorruptConfig(**settings), 16000)


def test_load_audio_and_audio_info_read_encoded_bytes(tmp_path):
    import soundfile

    from audiossl.audio.io import audio_info, load_audio
    from audiossl.errors import AudioError

    wave = 0.1 * torch.randn(1600, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "a.wav"
    soundfile.write(path, wave.numpy(), 16000, subtype="FLOAT")
    data = path.read_bytes()
    from_bytes, rate = load_audio(data, start=0.01, end=0.05, name="a stream")
    torch.testing.assert_close(from_bytes, load_audio(path, start=0.01, end=0.05)[0])
    assert rate == 16000 and audio_info(data) == audio_info(path) == (1600, 16000, 1)
    with pytest.raises(AudioError, match="my command"):
        load_audio(data[:100], name="my command")
