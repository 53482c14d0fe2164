"""Kaldi MFCC (+ deltas) on padded batches: parity with torchaudio.compliance.kaldi.mfcc and compute_deltas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional
from audio_signals import fsdd_signals, pad_batch, speech_like

from audiossl.audio import MfccConfig, compute_deltas, create_frontend, mfcc
from audiossl.config import from_dict
from audiossl.errors import ConfigError

TOLERANCE = 1e-3


def torchaudio_mfcc(signal: torch.Tensor, config: MfccConfig) -> torch.Tensor:
    """The reference: torchaudio's Kaldi MFCC, then compute_deltas applied per utterance (HuBERT's recipe)."""
    ceps = kaldi.mfcc(
        signal.unsqueeze(0),
        sample_frequency=config.sample_rate,
        num_mel_bins=config.num_mel_bins,
        num_ceps=config.num_ceps,
        cepstral_lifter=config.cepstral_lifter,
        use_energy=config.use_energy,
        energy_floor=config.energy_floor,
        htk_compat=config.htk_compat,
        snip_edges=config.snip_edges,
        window_type=config.window,
        dither=0.0,
    )  # (F, K)
    parts = [ceps]
    for _ in range(config.deltas):
        previous = parts[-1].T.unsqueeze(0)  # (1, K, F)
        parts.append(torchaudio.functional.compute_deltas(previous, win_length=2 * config.delta_window + 1)[0].T)
    return torch.cat(parts, dim=-1)


def assert_matches_torchaudio(signals: list[torch.Tensor], config: MfccConfig) -> None:
    waveforms, lengths = pad_batch(signals)
    features, frame_lengths = mfcc(waveforms, lengths, config)
    assert features.shape[-1] == config.num_ceps * (1 + config.deltas)
    for row, signal in enumerate(signals):
        expected = torchaudio_mfcc(signal, config)
        count = int(frame_lengths[row])
        assert count == expected.shape[0]
        assert (features[row, :count] - expected).abs().max() <= TOLERANCE
        assert (features[row, count:] == 0).all()


OPTION_SETS = {
    "hubert_39": {"deltas": 2},
    "default": {},
    "energy": {"use_energy": True},
    "energy_htk": {"use_energy": True, "htk_compat": True},
    "htk_no_energy": {"htk_compat": True},
    "no_lifter_40_bins_20_ceps": {"cepstral_lifter": 0.0, "num_mel_bins": 40, "num_ceps": 20},
    "deltas_window_3_centred": {"deltas": 1, "delta_window": 3, "snip_edges": False},
}


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_matches_torchaudio_on_speech_like_signals(options: dict) -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((16000, 4321, 700, 400))]
    assert_matches_torchaudio(signals, MfccConfig(**options))


def test_matches_torchaudio_on_real_fsdd_recordings(fsdd_recordings: Path) -> None:
    assert_matches_torchaudio(fsdd_signals(fsdd_recordings, count=4), MfccConfig(deltas=2))


def test_padded_batch_equals_each_item_alone() -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((9000, 2000, 560, 0))]
    waveforms, lengths = pad_batch(signals, extra=2000)
    features, frame_lengths = mfcc(waveforms, lengths, deltas=2)
    for row, signal in enumerate(signals):
        alone, alone_lengths = mfcc(signal.unsqueeze(0), torch.tensor([signal.shape[0]]), deltas=2)
        count = int(alone_lengths[0])
        assert int(frame_lengths[row]) == count
        assert torch.allclose(features[row, :count], alone[0, :count], rtol=0.0, atol=1e-4)
        assert (features[row, count:] == 0).all()


def test_deltas_replicate_each_items_own_edges() -> None:
    generator = torch.Generator().manual_seed(0)
    items = [torch.randn(n, 5, generator=generator) for n in (12, 3, 1)]
    batch = torch.full((3, 15, 5), 1e6)  # huge padding: any leak shows
    for row, item in enumerate(items):
        batch[row, : item.shape[0]] = item
    lengths = torch.tensor([item.shape[0] for item in items])
    deltas = compute_deltas(batch, lengths, window=2)
    for row, item in enumerate(items):
        expected = torchaudio.functional.compute_deltas(item.T.unsqueeze(0), win_length=5)[0].T
        assert torch.allclose(deltas[row, : item.shape[0]], expected, atol=1e-5)
        assert (deltas[row, item.shape[0] :] == 0).all()


def test_output_lengths_and_short_inputs() -> None:
    frontend = create_frontend("mfcc", deltas=1)
    assert frontend.num_channels == 26
    lengths = torch.tensor([0, 399, 400, 16000])
    features, frame_lengths = frontend(torch.randn(4, 16000), lengths)
    assert frame_lengths.tolist() == frontend.output_lengths(lengths).tolist() == [0, 0, 1, 98]
    assert features.shape == (4, 98, 26)
    empty, empty_lengths = frontend(torch.randn(2, 100), torch.tensor([100, 0]))
    assert empty.shape == (2, 0, 26) and empty_lengths.tolist() == [0, 0]


def test_config_from_yaml_mapping_and_errors() -> None:
    config = from_dict(MfccConfig, {"num_ceps": 20, "num_mel_bins": 40, "deltas": 2})
    assert (config.num_ceps, config.num_mel_bins, config.deltas) == (20, 40, 2)
    with pytest.raises(ConfigError):
        MfccConfig(num_ceps=30)  # more cepstra than the 23 mel bins
    with pytest.raises(ConfigError):
        MfccConfig(deltas=3)
    with pytest.raises(ConfigError):
        MfccConfig(use_log_fbank=False)
