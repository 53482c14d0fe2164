"""F0, loudness and key shifts on the feature grid; pitch metrics against slow references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from audiossl.errors import ConfigError, DataError
from audiossl_vc.pitch import (
    MAX_KEY_SHIFT,
    PitchTrack,
    a_weighted_loudness,
    extract_f0,
    key_shift,
    loudness_window,
)
from audiossl_vc.pitch_metrics import PitchTally, reference_on_grid

RATE, HOP = 16000, 320


@pytest.mark.parametrize("frequency", [98.0, 261.63, 440.0, 784.0])
def test_f0_of_a_synthetic_tone_is_within_a_few_cents(frequency):
    t = np.arange(RATE) / RATE
    tone = torch.from_numpy(0.3 * np.sin(2 * np.pi * frequency * t) + 0.1 * np.sin(4 * np.pi * frequency * t))
    f0, voiced = extract_f0(tone, RATE, HOP)
    assert f0.shape == (RATE // HOP,) and bool(voiced[5:-5].all())
    error = 1200 * np.log2(f0[5:-5].numpy() / frequency)
    # pYIN's F0 grid has 10-cent steps: the median lands within a step, every frame within two
    assert abs(float(np.median(error))) <= 10.0 and np.abs(error).max() <= 20.0


def test_silence_is_unvoiced_and_voicing_follows_a_gap():
    t = np.arange(RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 200.0 * t)
    tone[RATE // 4 : RATE // 2] = 0.0  # frames 12.5 .. 25 silent
    f0, voiced = extract_f0(torch.from_numpy(tone), RATE, HOP)
    assert not bool(voiced[15:23].any()) and bool(voiced[3:10].all()) and bool(voiced[30:45].all())
    assert float(f0[15:23].abs().max()) == 0.0


def _a_weight_db(frequency: np.ndarray) -> np.ndarray:
    """IEC 61672-1 A-weighting, written out (an independent reference for librosa.A_weighting)."""
    f2 = frequency**2
    ra = 12194.0**2 * f2**2 / ((f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2))
    return 20 * np.log10(ra) + 2.0


def test_loudness_equals_a_slow_per_frame_loop():
    rng = np.random.default_rng(0)
    samples = rng.standard_normal(RATE // 2) * np.linspace(0.01, 0.5, RATE // 2)
    frames = samples.size // HOP
    window = loudness_window(RATE)
    hann = scipy.signal.get_window("hann", window)  # periodic
    freqs = np.fft.rfftfreq(window, 1 / RATE)
    weights = np.zeros_like(freqs)
    weights[1:] = 10 ** (_a_weight_db(freqs[1:]) / 10)
    expected = []
    for i in range(frames):
        centre = i * HOP + HOP // 2
        chunk = np.zeros(window)
        for j in range(window):
            position = centre - window // 2 + j
            if 0 <= position < samples.size:
                chunk[j] = samples[position]
        power = np.abs(np.fft.rfft(chunk * hann)) ** 2
        expected.append(10 * np.log10(max((power * weights).mean(), 1e-10)))
    got = a_weighted_loudness(torch.from_numpy(samples), RATE, HOP).numpy()
    np.testing.assert_allclose(got, expected, atol=0.02)
    assert got[-1] - got[1] > 20  # the ramp's 34 dB rise shows


def _track(f0_hz: float, frames: int = 10) -> PitchTrack:
    return PitchTrack(torch.full((frames,), f0_hz), torch.ones(frames, dtype=torch.bool), torch.zeros(frames))


def test_key_shift_auto_moves_to_the_target_register_in_whole_semitones():
    assert key_shift("auto", _track(200.0), [_track(400.0), _track(410.0, 3)]) == 12.0
    assert key_shift("auto", _track(220.0), [_track(220.0 * 2 ** (-4.4 / 12))]) == -4.0
    assert key_shift("-3.5", _track(100.0), []) == -3.5


def test_key_shift_refuses_beyond_the_sane_range_and_unvoiced_sources():
    with pytest.raises(ConfigError, match="beyond the sane range"):
        key_shift(str(MAX_KEY_SHIFT + 1), _track(100.0), [])
    with pytest.raises(ConfigError, match="beyond the sane range") as info:
        key_shift("auto", _track(50.0), [_track(1000.0)], "src.wav", "pool/")  # +52 semitones
    assert "pool" in str(info.value)
    silent = PitchTrack(torch.zeros(5), torch.zeros(5, dtype=torch.bool), torch.zeros(5))
    with pytest.raises(DataError, match="no voiced frames") as info:
        key_shift("auto", silent, [_track(200.0)], "quiet.wav")
    assert "quiet.wav" in str(info.value)
    with pytest.raises(ConfigError, match="auto"):
        key_shift("up", _track(100.0), [])


def test_pitch_tally_matches_a_slow_computation():
    rng = np.random.default_rng(1)
    tally = PitchTally()
    squares, both, mismatched, total = [], 0, 0, 0
    for length in (30, 17):
        out = np.where(rng.random(length) < 0.8, rng.uniform(100, 400, length), 0.0)
        ref = np.where(rng.random(length + 3) < 0.8, rng.uniform(100, 400, length + 3), 0.0)
        tally.add(torch.from_numpy(out), torch.from_numpy(ref))
        for a, b in zip(out, ref[:length], strict=True):
            if a > 0 and b > 0:
                squares.append((1200 * math.log2(a / b)) ** 2)
                both += 1
            mismatched += (a > 0) != (b > 0)
            total += 1
    summary = tally.summary()
    assert summary["f0_rmse_cents"] == pytest.approx(math.sqrt(sum(squares) / both))
    assert summary["vde"] == pytest.approx(mismatched / total) and summary["frames"] == total


def test_reference_track_is_resampled_to_frame_centres():
    reference = np.array([0.0, 100.0, 110.0, 120.0, 130.0, 0.0, 0.0, 150.0])  # 200 Hz frames (5 ms)
    grid = reference_on_grid(reference, 200.0, hop=80, sample_rate=16000, frames=5)  # 5 ms frames too
    # frame i centre: (i + 0.5) x 5 ms -> reference index round(i + 0.5) (banker's rounding: even)
    assert grid.tolist() == [0.0, 110.0, 110.0, 130.0, 130.0]
    assert reference_on_grid(reference, 200.0, 160, 16000, 6).tolist()[-2:] == [0.0, 0.0]  # past the end
