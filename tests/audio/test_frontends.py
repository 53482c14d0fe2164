"""Invariants of every registered front-end: shapes, lengths, padding invariance, short inputs, configs, plots."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from audio_signals import pad_batch, speech_like

from audiossl.audio import FRONTENDS, create_frontend, frontend_config
from audiossl.audio.plot import plot_features
from audiossl.config import from_dict
from audiossl.errors import ConfigError

#: Options that keep each front-end small and fast here; the CNN in layer-norm mode is padding-invariant.
SMALL_OPTIONS = {"wav2vec2_cnn": {"conv_layers": [(16, 10, 5), (16, 3, 2), (16, 2, 2)], "mode": "layer_norm"}}


def build(name: str):
    torch.manual_seed(0)
    return create_frontend(name, **SMALL_OPTIONS.get(name, {})).eval()


@pytest.mark.parametrize("padding", ["noise", "nan"])
@pytest.mark.parametrize("name", FRONTENDS.names())
def test_padded_batch_equals_each_item_alone(name: str, padding: str) -> None:
    frontend = build(name)
    signals = [speech_like(n, seed) for seed, n in enumerate((8000, 2345, 401, 399, 60, 0))]
    waveforms, lengths = pad_batch(signals, extra=900, nan=padding == "nan")
    with torch.no_grad():
        features, frame_lengths = frontend(waveforms, lengths)
        assert features.shape == (len(signals), int(frame_lengths.max()), frontend.num_channels)
        for row, signal in enumerate(signals):
            alone, alone_lengths = frontend(signal.unsqueeze(0), torch.tensor([signal.shape[0]]))
            count = int(alone_lengths[0])
            assert int(frame_lengths[row]) == count
            assert torch.allclose(features[row, :count], alone[0, :count], rtol=0.0, atol=1e-4)
            assert (features[row, count:] == 0).all()


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_output_lengths_match_outputs(name: str) -> None:
    frontend = build(name)
    lengths = torch.tensor([0, 1, 159, 160, 320, 399, 400, 401, 1000, 4000])
    with torch.no_grad():
        features, frame_lengths = frontend(torch.randn(len(lengths), 4000), lengths)
    assert torch.equal(frame_lengths, frontend.output_lengths(lengths))
    assert features.shape[1] == int(frame_lengths.max())
    assert frontend.frame_shift >= 1


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_empty_and_tiny_batches(name: str) -> None:
    frontend = build(name)
    with torch.no_grad():
        for waveforms, lengths in ((torch.zeros(2, 0), torch.tensor([0, 0])), (torch.randn(1, 3), torch.tensor([3]))):
            features, frame_lengths = frontend(waveforms, lengths)
            assert features.shape == (waveforms.shape[0], int(frame_lengths.max()), frontend.num_channels)
            assert torch.equal(frame_lengths, frontend.output_lengths(lengths))


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_config_maps_onto_yaml_and_rejects_unknown_keys(name: str) -> None:
    spec = FRONTENDS.get(name)
    config = spec.config_class()
    data = dataclasses.asdict(config)
    assert from_dict(spec.config_class, data) == config  # a YAML dump of the defaults loads back
    for item in dataclasses.fields(config):
        assert item.init
    with pytest.raises(ConfigError):
        frontend_config(name, {"no_such_option": 1})
    with pytest.raises(ConfigError):
        create_frontend(name, no_such_option=1)


def test_unknown_front_end_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="fbank"):
        create_frontend("spectrogramz")


def test_plot_features_writes_a_png_atomically(tmp_path: Path) -> None:
    features = torch.randn(120, 40)
    mask = torch.zeros(120, dtype=torch.bool)
    mask[30:50] = True
    path = plot_features(features, tmp_path / "plots" / "utt.png", title="utt (fbank)", mask=mask)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["utt.png"]
    with pytest.raises(ValueError):
        plot_features(torch.randn(2, 3, 4), tmp_path / "bad.png")
