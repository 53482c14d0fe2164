"""Noise and reverberation on padded waveform batches: SNR, convolution, RT60, spectra, lengths, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch
from scipy.signal import welch

from audiossl.audio.corrupt import CorruptConfig, exponential_rir, pink_noise
from audiossl.data.corrupt import Corruptor
from audiossl.data.kaldi import DataDir
from audiossl.errors import ConfigError

RATE = 8000


def speechlike(length: int, seed: int) -> torch.Tensor:
    """A decaying harmonic tone with noise (T,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / RATE
    wave = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6)) * np.exp(-t) + 0.05 * rng.standard_normal(
        length
    )
    return torch.from_numpy(wave).float()


def padded(*waves: torch.Tensor, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()) + extra)
    for row, wave in enumerate(waves):
        batch[row, : len(wave)] = wave
    return batch, lengths


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_padding_stays_zero_and_extra_padding_changes_nothing():
    corrupt = Corruptor(CorruptConfig(noise_prob=1.0, reverb_prob=1.0, noise_kinds=("white", "pink")), RATE)
    a, b = speechlike(4000, 0), speechlike(2500, 1)
    batch, lengths = padded(a, b)
    wider, _ = padded(a, b, extra=700)
    out = corrupt(batch, lengths, gen(3))
    out_wider = corrupt(wider, lengths, gen(3))
    assert torch.all(out[1, 2500:] == 0) and torch.all(out_wider[:, 4000:] == 0)
    torch.testing.assert_close(out_wider[:, :4000], out, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[0, :4000], a)  # something happened


def test_first_item_alone_equals_it_in_a_batch():
    corrupt = Corruptor(CorruptConfig(noise_prob=1.0, reverb_prob=1.0, noise_kinds=("white",)), RATE)
    a, b = speechlike(3000, 0), speechlike(5000, 1)
    batch, lengths = padded(a, b)
    alone = corrupt(a.unsqueeze(0), torch.tensor([3000]), gen(5))
    together = corrupt(batch, lengths, gen(5))
    torch.testing.assert_close(together[0, :3000], alone[0], rtol=1e-5, atol=1e-6)


def test_same_seed_same_output_other_seed_other_output():
    corrupt = Corruptor(CorruptConfig(noise_prob=1.0, reverb_prob=1.0), RATE)
    batch, lengths = padded(speechlike(3000, 0), speechlike(2000, 1))
    first, again, other = (corrupt(batch, lengths, gen(s)) for s in (1, 1, 2))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
def test_noise_is_added_at_the_drawn_snr(kind):
    corrupt = Corruptor(CorruptConfig(noise_prob=1.0, reverb_prob=0.0, noise_kinds=(kind,), snr_db=(7.5, 7.5)), RATE)
    clean = speechlike(6000, 2)
    batch, lengths = padded(clean, speechlike(1000, 3))
    noisy = corrupt(batch, lengths, gen(0))
    noise = noisy[0, :6000] - clean
    snr = 10 * math.log10(float(clean.square().mean()) / float(noise.square().mean()))
    assert snr == pytest.approx(7.5, abs=1e-3)


def test_reverberation_is_a_causal_convolution_at_the_same_level():
    corrupt = Corruptor(CorruptConfig(noise_prob=0.0, reverb_prob=1.0), RATE)
    clean = speechlike(4000, 4)
    out = corrupt(clean.unsqueeze(0), torch.tensor([4000]), gen(9))[0]
    replay = gen(9)
    torch.rand((), generator=replay)  # the reverberation decision
    rir = corrupt.rir(replay).numpy().astype(np.float64)
    reference = np.convolve(clean.numpy().astype(np.float64), rir)[:4000]
    reference *= np.sqrt(np.mean(clean.numpy().astype(np.float64) ** 2) / np.mean(reference**2))
    np.testing.assert_allclose(out.numpy(), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rt60", [0.3, 0.7])
def test_generated_rir_decays_60_db_in_rt60(rt60):
    rir = exponential_rir(16000, rt60, gen(1)).numpy().astype(np.float64)
    assert np.sum(rir**2) == pytest.approx(1.0, rel=1e-5)
    # Schroeder backward integration; T20 = time from -5 to -25 dB, times 3.
    energy = np.cumsum((rir**2)[::-1])[::-1]
    decay_db = 10 * np.log10(energy / energy[0])
    t5, t25 = np.argmax(decay_db < -5) / 16000, np.argmax(decay_db < -25) / 16000
    assert 3 * (t25 - t5) == pytest.approx(rt60, rel=0.15)


def test_pink_noise_falls_by_3_db_per_octave():
    noise = pink_noise(2**16, gen(0)).numpy()
    assert noise.std() == pytest.approx(1.0, rel=1e-4)
    freqs, power = welch(noise, fs=RATE, nperseg=2048)
    band = (freqs > 50) & (freqs < 3000)
    slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.15)


def write_dir(root, name: str, waves: dict[str, np.ndarray]) -> str:
    data = DataDir()
    for utt, wave in waves.items():
        path = root / f"{name}-{utt}.wav"
        soundfile.write(path, wave.astype(np.float32), RATE)
        data.wav_scp[utt] = str(path)
        data.utt2spk[utt] = utt
    data.save(root / name)
    return str(root / name)


def test_noise_and_rirs_read_from_data_dirs(tmp_path):
    t = np.arange(RATE) / RATE
    noise_dir = write_dir(tmp_path, "noise", {"hum": 0.1 * np.sin(2 * np.pi * 440 * t)})
    impulse = np.zeros(400)
    impulse[0] = 0.5
    rir_dir = write_dir(tmp_path, "rir", {"dirac": impulse})
    config = CorruptConfig(noise_prob=1.0, reverb_prob=1.0, noise_dir=noise_dir, rir_dir=rir_dir, snr_db=(0.0, 0.0))
    corrupt = Corruptor(config, RATE)
    clean = 0.01 * torch.randn(3000, generator=gen(0))
    out = corrupt(clean.unsqueeze(0), torch.tensor([3000]), gen(1))[0]
    added = (out - clean).numpy()  # a Dirac RIR leaves the signal as it was
    spectrum = np.abs(np.fft.rfft(added))
    assert np.fft.rfftfreq(3000, 1 / RATE)[np.argmax(spectrum)] == pytest.approx(440, abs=3)
    assert np.mean(added**2) == pytest.approx(float(clean.square().mean()), rel=1e-3)  # 0 dB


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="noise_prob"):
        CorruptConfig(noise_prob=1.5)
    with pytest.raises(ConfigError, match="noise_kinds"):
        CorruptConfig(noise_kinds=("traffic",))
    with pytest.raises(ConfigError, match="rt60"):
        CorruptConfig(rt60_s=(0.0, 0.5))
