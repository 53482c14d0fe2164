"""Kaldi fbank on padded batches: parity with torchaudio.compliance.kaldi per utterance, padding, lengths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
from audio_signals import fsdd_signals, pad_batch, speech_like

import audiossl.audio.framing as framing
from audiossl.audio import FbankConfig, create_frontend, fbank
from audiossl.audio.kaldi_fbank import frame_geometry, kaldi_num_frames
from audiossl.config import from_dict
from audiossl.errors import ConfigError

TOLERANCE = 1e-3  # max abs difference of log energies, the requirement


def torchaudio_fbank(signal: torch.Tensor, config: FbankConfig) -> torch.Tensor:
    """The reference: torchaudio's Kaldi fbank of one utterance with the same options."""
    return kaldi.fbank(
        signal.unsqueeze(0),
        sample_frequency=config.sample_rate,
        num_mel_bins=config.num_mel_bins,
        frame_length=config.frame_length_ms,
        frame_shift=config.frame_shift_ms,
        preemphasis_coefficient=config.preemphasis,
        remove_dc_offset=config.remove_dc_offset,
        window_type=config.window,
        blackman_coeff=config.blackman_coeff,
        snip_edges=config.snip_edges,
        dither=0.0,
        low_freq=config.low_freq,
        high_freq=config.high_freq,
        use_energy=config.use_energy,
        raw_energy=config.raw_energy,
        energy_floor=config.energy_floor,
        htk_compat=config.htk_compat,
        use_log_fbank=config.use_log_fbank,
        use_power=config.use_power,
        round_to_power_of_two=config.round_to_power_of_two,
    )


def assert_matches_torchaudio(signals: list[torch.Tensor], config: FbankConfig, relative: bool = False) -> None:
    waveforms, lengths = pad_batch(signals)
    features, frame_lengths = fbank(waveforms, lengths, config)
    assert features.shape[0] == len(signals) and features.shape[1] == int(frame_lengths.max())
    for row, signal in enumerate(signals):
        expected = torchaudio_fbank(signal, config)
        count = int(frame_lengths[row])
        assert count == expected.shape[0]
        got = features[row, :count]
        if relative:  # linear energies: compare relative to each frame's largest value
            scale = expected.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
            assert ((got - expected).abs() / scale).max() <= TOLERANCE
        else:
            assert (got - expected).abs().max() <= TOLERANCE
        assert (features[row, count:] == 0).all()


OPTION_SETS = {
    "default": {},
    "no_snip_edges": {"snip_edges": False},
    "hamming": {"window": "hamming"},
    "hanning_centred": {"window": "hanning", "snip_edges": False},
    "rectangular": {"window": "rectangular"},
    "blackman": {"window": "blackman"},
    "energy": {"use_energy": True},
    "energy_htk_windowed_floor": {"use_energy": True, "raw_energy": False, "htk_compat": True, "energy_floor": 1.0},
    "no_preemphasis_no_dc": {"preemphasis": 0.0, "remove_dc_offset": False},
    "magnitude": {"use_power": False},
    "8k_40_bins_no_pow2": {"sample_rate": 8000, "num_mel_bins": 40, "round_to_power_of_two": False},
    "ast": {"window": "hanning", "htk_compat": True, "num_mel_bins": 128},
}


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_matches_torchaudio_on_speech_like_signals(options: dict) -> None:
    config = FbankConfig(**options)
    rate = config.sample_rate
    signals = [speech_like(n, seed) for seed, n in enumerate((rate, rate // 3 + 17, rate // 2 - 5, 1200))]
    assert_matches_torchaudio(signals, config)


def test_linear_energies_match_torchaudio_relatively() -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((8000, 5000))]
    assert_matches_torchaudio(signals, FbankConfig(use_log_fbank=False), relative=True)


def test_matches_torchaudio_on_white_noise() -> None:
    generator = torch.Generator().manual_seed(3)
    signals = [0.1 * torch.randn(n, generator=generator) for n in (16000, 7000, 401)]
    assert_matches_torchaudio(signals, FbankConfig())
    assert_matches_torchaudio(signals, FbankConfig(snip_edges=False, window="hamming"))


@pytest.mark.parametrize(
    "options", [{}, {"snip_edges": False}, {"window": "hanning"}], ids=["default", "centred", "hanning"]
)
def test_matches_torchaudio_on_real_fsdd_recordings(fsdd_recordings: Path, options: dict) -> None:
    assert_matches_torchaudio(fsdd_signals(fsdd_recordings, count=4), FbankConfig(**options))


def kaldi_centred_frame(signal: torch.Tensor, frame: int, length: int, shift: int) -> torch.Tensor:
    """Kaldi's ExtractWindow without snip_edges, written out: reflect (repeatedly) at both ends."""
    n = signal.shape[0]
    start = frame * shift + shift // 2 - length // 2
    samples = []
    for position in range(start, start + length):
        while position < 0 or position >= n:
            position = -position - 1 if position < 0 else 2 * n - 1 - position
        samples.append(signal[position])
    return torch.stack(samples)


@pytest.mark.parametrize("n", [1, 7, 150, 399, 401, 1234])
def test_centred_frames_reflect_each_utterance_like_kaldi(n: int) -> None:
    """Short utterances (shorter than a frame, even than half a frame) against frames cut by hand."""
    config = FbankConfig(snip_edges=False, num_mel_bins=23)
    length, shift, _ = frame_geometry(config)
    signal = speech_like(n, seed=n)
    waveforms, lengths = pad_batch([signal, speech_like(3000, seed=1)])
    features, frame_lengths = fbank(waveforms, lengths, config)
    assert int(frame_lengths[0]) == (n + shift // 2) // shift
    for frame in range(int(frame_lengths[0])):
        cut = kaldi_centred_frame(signal, frame, length, shift)
        expected = torchaudio_fbank(cut, FbankConfig(num_mel_bins=23))  # one frame, per-frame processing
        assert (features[0, frame] - expected[0]).abs().max() <= TOLERANCE


def test_padded_batch_equals_each_item_alone() -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((16000, 3000, 400, 399, 0, 9001))]
    for config in (FbankConfig(), FbankConfig(snip_edges=False, use_energy=True)):
        waveforms, lengths = pad_batch(signals, extra=777)
        features, frame_lengths = fbank(waveforms, lengths, config)
        for row, signal in enumerate(signals):
            alone, alone_lengths = fbank(signal.unsqueeze(0), torch.tensor([signal.shape[0]]), config)
            count = int(alone_lengths[0])
            assert int(frame_lengths[row]) == count
            # Equal up to BLAS rounding (the mel matmul blocks rows differently for other row counts).
            assert torch.allclose(features[row, :count], alone[0, :count], rtol=0.0, atol=1e-5)
            assert (features[row, count:] == 0).all()


def test_chunking_and_packing_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    signals = [speech_like(n, seed) for seed, n in enumerate((5000, 800, 1600, 400, 2400, 700))]
    waveforms, lengths = pad_batch(signals)
    reference, reference_lengths = fbank(waveforms, lengths)
    monkeypatch.setattr(framing, "CHUNK_FRAMES", 8)  # many chunks: split long items, pack short ones
    chunked, chunked_lengths = fbank(waveforms, lengths)
    monkeypatch.setattr(framing, "chunked", lambda device: False)  # the accelerator path: one pass, dense mel
    single, single_lengths = fbank(waveforms, lengths)
    assert torch.equal(reference_lengths, chunked_lengths) and torch.equal(reference_lengths, single_lengths)
    assert (reference - chunked).abs().max() <= 1e-5
    assert (reference - single).abs().max() <= 1e-5


@pytest.mark.parametrize("snip_edges", [True, False])
def test_output_lengths_match_outputs_and_kaldi_formula(snip_edges: bool) -> None:
    frontend = create_frontend("fbank", snip_edges=snip_edges, num_mel_bins=23)
    lengths = torch.tensor([0, 1, 159, 160, 399, 400, 401, 559, 560, 16000])
    waveforms = torch.randn(len(lengths), 16000)
    _, frame_lengths = frontend(waveforms, lengths)
    if snip_edges:
        expected = [0 if n < 400 else 1 + (n - 400) // 160 for n in lengths.tolist()]
    else:
        expected = [(n + 80) // 160 for n in lengths.tolist()]
    assert frame_lengths.tolist() == expected
    assert frontend.output_lengths(lengths).tolist() == expected
    assert kaldi_num_frames(lengths, 400, 160, snip_edges).tolist() == expected


def test_too_short_and_empty_batches_give_zero_frames() -> None:
    features, frame_lengths = fbank(torch.randn(3, 399), torch.tensor([399, 10, 0]))
    assert features.shape == (3, 0, 128) and frame_lengths.tolist() == [0, 0, 0]
    features, frame_lengths = fbank(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
    assert features.shape == (0, 0, 128) and frame_lengths.shape == (0,)


def test_silence_floors_at_float_epsilon_like_kaldi() -> None:
    features, _ = fbank(torch.zeros(1, 1000), torch.tensor([1000]))
    expected = torchaudio_fbank(torch.zeros(1000), FbankConfig())
    assert torch.equal(features[0], expected)


def test_dither_is_reproducible_with_a_generator() -> None:
    waveforms, lengths = pad_batch([speech_like(4000, 0), speech_like(2000, 1)])
    first, _ = fbank(waveforms, lengths, dither=1.0, generator=torch.Generator().manual_seed(5))
    again, _ = fbank(waveforms, lengths, dither=1.0, generator=torch.Generator().manual_seed(5))
    plain, _ = fbank(waveforms, lengths)
    assert torch.equal(first, again)
    assert not torch.equal(first, plain)


def test_float64_input_keeps_its_dtype_and_matches() -> None:
    signal = speech_like(4000, 2).double()
    features, _ = fbank(signal.unsqueeze(0), torch.tensor([4000]))
    assert features.dtype == torch.float64
    assert (features[0] - kaldi.fbank(signal.unsqueeze(0), num_mel_bins=128, energy_floor=0.0)).abs().max() <= 1e-6


def test_config_from_yaml_mapping_and_bad_options() -> None:
    config = from_dict(FbankConfig, {"num_mel_bins": 80, "window": "hamming", "frame_shift_ms": 20})
    assert (config.num_mel_bins, config.window, config.frame_shift_ms) == (80, "hamming", 20.0)
    frontend = create_frontend("fbank", {"num_mel_bins": 80})
    assert frontend.num_channels == 80 and frontend.frame_shift == 160
    with pytest.raises(ConfigError):
        from_dict(FbankConfig, {"num_mel_bin": 80})
    with pytest.raises(ConfigError):
        fbank(torch.zeros(1, 500), torch.tensor([500]), window="kaiser")
    with pytest.raises(ConfigError):
        fbank(torch.zeros(1, 500), torch.tensor([500]), nonsense=1)
    with pytest.raises(ConfigError):
        FbankConfig(round_to_power_of_two=False, frame_length_ms=25.0625)  # 401 samples: odd FFT size
    with pytest.raises(ValueError):
        fbank(torch.zeros(2, 500), torch.tensor([500, 501]))
