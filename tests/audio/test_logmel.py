"""librosa log-mel on padded batches: parity with librosa per utterance, per-item top_db, padding, lengths.

"Relative" is measured on the mel power, elementwise: ``|P - P_librosa| <= 1e-3 * P_librosa``
at every element (after top_db clipping), i.e. ``|dB - dB_librosa| <= 10 log10(1.001)``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from audio_signals import fsdd_signals, pad_batch, speech_like

from audiossl.audio import LogMelConfig, create_frontend, log_mel
from audiossl.audio.melspec import log_mel_num_frames
from audiossl.config import from_dict
from audiossl.errors import ConfigError

DB_TOLERANCE = 10 * math.log10(1 + 1e-3)  # 1e-3 relative power


def librosa_log_mel(signal: torch.Tensor, config: LogMelConfig) -> torch.Tensor:
    """The reference: librosa.power_to_db(librosa.feature.melspectrogram(...)) of one utterance, (F, n_mels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns when n_fft exceeds a very short signal
        power = librosa.feature.melspectrogram(
            y=signal.numpy(),
            sr=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            n_mels=config.n_mels,
            fmin=config.f_min,
            fmax=config.f_max,
            htk=config.htk,
            norm=config.norm,
            center=config.center,
            pad_mode=config.pad_mode,
            power=config.power,
        )
    if not config.to_db:
        return torch.from_numpy(power).T
    db = librosa.power_to_db(power, ref=config.ref, amin=config.amin, top_db=config.top_db)
    return torch.from_numpy(np.ascontiguousarray(db.T))


def assert_matches_librosa(signals: list[torch.Tensor], config: LogMelConfig) -> None:
    waveforms, lengths = pad_batch(signals)
    features, frame_lengths = log_mel(waveforms, lengths, config)
    for row, signal in enumerate(signals):
        expected = librosa_log_mel(signal, config)
        count = int(frame_lengths[row])
        assert count == expected.shape[0]
        got = features[row, :count]
        if config.to_db:
            assert (got - expected).abs().max() <= DB_TOLERANCE
        else:
            assert ((got - expected).abs() <= 1e-3 * expected.abs() + 1e-9).all()
        assert (features[row, count:] == 0).all()


OPTION_SETS = {
    "default": {},
    "reflect": {"pad_mode": "reflect"},
    "not_centred": {"center": False},
    "full_window": {"n_fft": 400, "win_length": None},
    "odd_fft_short_hop": {"n_fft": 511, "win_length": 300, "hop_length": 100},
    "magnitude_htk_64": {"power": 1.0, "n_mels": 64, "htk": True, "f_min": 50.0, "f_max": 7000.0},
    "no_top_db_peak_norm": {"top_db": None, "norm": None, "n_mels": 40},
    "linear": {"to_db": False},
}


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_matches_librosa_on_speech_like_signals(options: dict) -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((16000, 5555, 1601, 700))]
    assert_matches_librosa(signals, LogMelConfig(**options))


def test_matches_librosa_on_white_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    signals = [0.1 * torch.randn(n, generator=generator) for n in (8000, 3001)]
    assert_matches_librosa(signals, LogMelConfig())


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_matches_librosa_on_real_fsdd_recordings(fsdd_recordings: Path, pad_mode: str) -> None:
    assert_matches_librosa(fsdd_signals(fsdd_recordings, count=4), LogMelConfig(pad_mode=pad_mode))


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_utterances_shorter_than_the_fft_match_librosa(pad_mode: str) -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((1, 5, 100, 255, 257))]
    assert_matches_librosa(signals, LogMelConfig(pad_mode=pad_mode))


def test_top_db_clips_each_utterance_at_its_own_peak() -> None:
    loud = speech_like(8000, 0)
    quiet = 0.1 * speech_like(8000, 1)  # about 20 dB below the loud one
    loud[4000:] = 0.0  # digital silence: floored at amin, far below each peak, so clipping shows
    quiet[4000:] = 0.0
    waveforms, lengths = pad_batch([loud, quiet])
    features, _ = log_mel(waveforms, lengths)
    peaks = features.amax(dim=(1, 2))
    assert peaks[0] - peaks[1] > 15.0
    for row in range(2):  # each item is clipped at its own peak - top_db, and reaches it
        assert torch.isclose(features[row].min(), peaks[row] - 80.0, atol=1e-3)
    assert features[1].min() < peaks[0] - 80.0 - 10.0  # not at the loud item's floor


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_padded_batch_equals_each_item_alone(pad_mode: str) -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((12000, 3000, 100, 0, 1))]
    waveforms, lengths = pad_batch(signals, extra=1000)
    features, frame_lengths = log_mel(waveforms, lengths, pad_mode=pad_mode)
    for row, signal in enumerate(signals):
        alone, alone_lengths = log_mel(signal.unsqueeze(0), torch.tensor([signal.shape[0]]), pad_mode=pad_mode)
        count = int(alone_lengths[0])
        assert int(frame_lengths[row]) == count
        assert torch.allclose(features[row, :count], alone[0, :count], rtol=0.0, atol=1e-4)
        assert (features[row, count:] == 0).all()


@pytest.mark.parametrize(("n_fft", "hop", "center"), [(512, 160, True), (511, 100, True), (400, 160, False)])
def test_output_lengths_match_outputs_and_librosa(n_fft: int, hop: int, center: bool) -> None:
    config = LogMelConfig(n_fft=n_fft, hop_length=hop, win_length=None, center=center)
    frontend = create_frontend("log_mel", config)
    lengths = torch.tensor([0, 1, 159, 160, 399, 400, 401, 511, 512, 4000])
    _, frame_lengths = frontend(torch.randn(len(lengths), 4000), lengths)
    assert torch.equal(frame_lengths, frontend.output_lengths(lengths))
    assert torch.equal(frame_lengths, log_mel_num_frames(lengths, n_fft, hop, center))
    for n, count in zip(lengths.tolist()[1:], frame_lengths.tolist()[1:], strict=True):
        if not center and n < n_fft:
            assert count == 0  # librosa refuses signals shorter than n_fft without centring
            continue
        assert count == librosa_log_mel(torch.ones(n) * 0.1, config).shape[0]
    assert frame_lengths[0] == 0  # an empty utterance has no frames (librosa refuses empty input)


def test_config_from_yaml_mapping_and_errors() -> None:
    config = from_dict(LogMelConfig, {"n_mels": 80, "win_length": None, "top_db": None, "pad_mode": "reflect"})
    assert (config.n_mels, config.win_length, config.top_db) == (80, None, None)
    with pytest.raises(ConfigError):
        from_dict(LogMelConfig, {"pad_mode": "wrap"})
    with pytest.raises(ConfigError):
        LogMelConfig(win_length=1024, n_fft=512)
    with pytest.raises(ConfigError):
        log_mel(torch.zeros(1, 10), torch.tensor([10]), nfft=512)
