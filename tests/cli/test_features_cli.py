from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.audio import fbank
from audiossl.audio.io import load_audio
from audiossl.audio.normalize import GlobalStats
from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir
from audiossl.data.synth import SynthConfig, synthesize_corpus


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=2, seed=3))
    return out


def test_features_plot_writes_a_png(synth_dir, tmp_path, capsys):
    out = tmp_path / "f.png"
    data = DataDir.load(synth_dir)
    utt = data.utterance_ids[1]
    assert main(["features", "plot", str(synth_dir), "--out", str(out), "--utt", utt]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["features", "plot", str(synth_dir), "--out", str(out), "--utt", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err


def test_features_stats_equal_a_direct_computation(synth_dir, tmp_path):
    out = tmp_path / "cmvn.npz"
    assert main(["features", "stats", str(synth_dir), "--out", str(out)]) == 0
    stats = GlobalStats.load(out)
    # Independent reference: every utterance alone through the functional fbank, stacked.
    data = DataDir.load(synth_dir)
    frames = []
    for utt in data.utterance_ids:
        waveform, _ = load_audio(data.wav_scp[utt], sample_rate=16000)
        features, lengths = fbank(waveform[None], torch.tensor([waveform.numel()]), sample_rate=16000)
        frames.append(features[0, : int(lengths[0])].double().numpy())
    stacked = np.concatenate(frames)
    assert stats.count == stacked.shape[0]
    np.testing.assert_allclose(stats.mean, stacked.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, stacked.var(axis=0), rtol=1e-4, atol=1e-4)


def test_features_stats_follow_a_pretraining_config(synth_dir, tmp_path, capsys):
    out = tmp_path / "cmvn.npz"
    args = ["features", "stats", str(synth_dir), "--out", str(out), "--config", "mspm-ast-tiny"]
    assert main([*args, "--set", "data.frontend_config.num_mel_bins=24"]) == 0
    stats = GlobalStats.load(out)
    assert stats.num_channels == 24 and stats.frontend == "fbank"
    # The same numbers as the plain command with the same front-end settings.
    data = DataDir.load(synth_dir)
    frames = []
    for utt in data.utterance_ids:
        waveform, _ = load_audio(data.wav_scp[utt], sample_rate=16000)
        features, lengths = fbank(waveform[None], torch.tensor([waveform.numel()]), sample_rate=16000, num_mel_bins=24)
        frames.append(features[0, : int(lengths[0])].double().numpy())
    np.testing.assert_allclose(stats.mean, np.concatenate(frames).mean(axis=0), rtol=1e-5, atol=1e-5)
    capsys.readouterr()
    assert main(["features", "stats", str(synth_dir), "--out", str(out), "--set", "data.sample_rate=8000"]) == 2
    assert "give --config too" in capsys.readouterr().err


def test_features_list_names_every_frontend(capsys):
    from audiossl.audio import FRONTENDS

    assert main(["features", "list"]) == 0
    out = capsys.readouterr().out
    for name in FRONTENDS.names():
        assert name in out
