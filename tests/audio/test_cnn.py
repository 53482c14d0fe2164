"""wav2vec2 waveform CNN: parity with torchaudio's feature extractor, conv length formula, padding behaviour."""

from __future__ import annotations

import pytest
import torch
from audio_signals import pad_batch, speech_like
from torchaudio.models.wav2vec2.components import _get_feature_extractor

from audiossl.audio import ConvFeatureConfig, ConvFeatureExtractor, create_frontend
from audiossl.audio.cnn import conv_output_lengths
from audiossl.config import from_dict
from audiossl.errors import ConfigError

SMALL = [(16, 10, 5), (16, 3, 2), (16, 2, 2)]


def conv_formula(lengths: list[int], layers: list[tuple[int, int, int]]) -> list[int]:
    """floor((L - kernel) / stride) + 1 per layer, never below zero, written out in Python."""
    out = []
    for n in lengths:
        for _, kernel, stride in layers:
            n = max(0, (n - kernel) // stride + 1)
        out.append(n)
    return out


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_matches_torchaudio_feature_extractor(mode: str) -> None:
    torch.manual_seed(0)
    ours = ConvFeatureExtractor(ConvFeatureConfig(conv_layers=SMALL, mode=mode, conv_bias=mode == "layer_norm")).eval()
    theirs = _get_feature_extractor(mode, SMALL, bias=mode == "layer_norm").eval()
    renamed = {
        name.replace("blocks.", "conv_layers.").replace(".norm.", ".layer_norm."): value
        for name, value in ours.state_dict().items()
    }
    theirs.load_state_dict(renamed)  # strict: same parameters, same shapes
    waveforms = torch.stack([speech_like(3000, 0), speech_like(3000, 1)])
    lengths = torch.tensor([3000, 3000])
    features, frame_lengths = ours(waveforms, lengths)
    expected, expected_lengths = theirs(waveforms, lengths)
    assert torch.equal(frame_lengths, expected_lengths)
    assert torch.allclose(features, expected, atol=1e-5)


def test_default_shape_is_wav2vec2() -> None:
    frontend = create_frontend("wav2vec2_cnn")
    assert frontend.num_channels == 512 and frontend.frame_shift == 320 and frontend.receptive_field == 400
    assert sum(p.numel() for p in frontend.parameters()) > 4_000_000  # learnable (about 4.2M parameters)
    lengths = torch.tensor([0, 399, 400, 719, 720, 16000, 16001])
    expected = conv_formula(lengths.tolist(), ConvFeatureConfig().conv_layers)
    assert frontend.output_lengths(lengths).tolist() == expected
    assert expected[-2] == 49  # 1 s at 16 kHz -> 49 frames, as wav2vec2


@pytest.mark.parametrize("layers", [SMALL, [(8, 4, 3), (8, 5, 1), (4, 2, 2)]], ids=["small", "odd"])
def test_output_lengths_match_outputs_and_conv_formula(layers: list) -> None:
    frontend = ConvFeatureExtractor(ConvFeatureConfig(conv_layers=layers, mode="layer_norm")).eval()
    lengths = torch.tensor([0, 5, 9, 10, 11, 37, 64, 200])
    features, frame_lengths = frontend(torch.randn(len(lengths), 200), lengths)
    expected = conv_formula(lengths.tolist(), layers)
    assert frame_lengths.tolist() == expected == frontend.output_lengths(lengths).tolist()
    assert features.shape[1] == max(expected)
    for row, count in enumerate(expected):
        assert (features[row, count:] == 0).all()
    assert conv_output_lengths(torch.tensor([3, 10, 11]), 10, 5).tolist() == [0, 1, 1]


def test_layer_norm_mode_is_padding_invariant() -> None:
    torch.manual_seed(1)
    frontend = ConvFeatureExtractor(ConvFeatureConfig(conv_layers=SMALL, mode="layer_norm", normalize_waveform=True))
    frontend.eval()
    signals = [speech_like(n, seed) for seed, n in enumerate((4000, 1234, 60, 9))]
    waveforms, lengths = pad_batch(signals, extra=500)
    features, frame_lengths = frontend(waveforms, lengths)
    for row, signal in enumerate(signals):
        alone, alone_lengths = frontend(signal.unsqueeze(0), torch.tensor([signal.shape[0]]))
        count = int(alone_lengths[0])
        assert int(frame_lengths[row]) == count
        assert torch.allclose(features[row, :count], alone[0, :count], atol=1e-5)


def test_group_norm_mode_normalises_over_padding_as_documented() -> None:
    """Like wav2vec2 base: the first layer's GroupNorm sees padding, so a padded item differs from alone."""
    torch.manual_seed(2)
    frontend = ConvFeatureExtractor(ConvFeatureConfig(conv_layers=SMALL, mode="group_norm")).eval()
    signal = speech_like(2000, 0)
    waveforms, lengths = pad_batch([signal, speech_like(6000, 1)])
    features, frame_lengths = frontend(waveforms, lengths)
    alone, _ = frontend(signal.unsqueeze(0), torch.tensor([2000]))
    count = int(frame_lengths[0])
    assert not torch.allclose(features[0, :count], alone[0, :count], atol=1e-3)


def test_inputs_shorter_than_the_receptive_field_give_no_frames() -> None:
    frontend = create_frontend("wav2vec2_cnn", conv_layers=SMALL)
    features, frame_lengths = frontend(torch.randn(2, 20), torch.tensor([20, 3]))
    assert features.shape == (2, 0, 16) and frame_lengths.tolist() == [0, 0]


def test_gradients_reach_every_parameter() -> None:
    frontend = create_frontend("wav2vec2_cnn", conv_layers=SMALL, mode="layer_norm", conv_bias=True)
    features, _ = frontend(torch.randn(2, 500), torch.tensor([500, 300]))
    features.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in frontend.parameters())


def test_config_from_yaml_mapping_and_errors() -> None:
    config = from_dict(ConvFeatureConfig, {"conv_layers": [[32, 10, 5], [32, 3, 2]], "mode": "layer_norm"})
    assert config.conv_layers == [(32, 10, 5), (32, 3, 2)]
    assert create_frontend("wav2vec2_cnn", config).num_channels == 32
    with pytest.raises(ConfigError):
        from_dict(ConvFeatureConfig, {"mode": "batch_norm"})
    with pytest.raises(ConfigError):
        ConvFeatureConfig(conv_layers=[(16, 0, 1)])
