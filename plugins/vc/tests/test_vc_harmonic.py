"""Harmonic source and linear time-varying filter of NeuCoSVC, and the synthesizer's shapes."""

from __future__ import annotations

import math

import numpy as np
import torch

from audiossl_vc.harmonic import harmonic_source, ltv_filter, upsample_f0
from audiossl_vc.neucosvc import NeuCoSVCConfig, Synthesizer

RATE, HOP = 16000, 160


def test_constant_f0_spectrum_peaks_at_the_harmonics_and_nowhere_else():
    f0 = torch.full((1, 100), 200.0)  # one second: 1 Hz FFT bins, harmonics on bins
    signal = harmonic_source(f0, HOP, RATE)[0].double().numpy()
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    freqs = np.fft.rfftfreq(signal.size, 1 / RATE)
    harmonics = np.arange(200, RATE / 2, 200)  # 200 .. 7800 Hz, all below Nyquist
    peak = spectrum.max()
    for h in harmonics:
        assert spectrum[int(h)] > 0.5 * peak, f"no peak at {h} Hz"
    distance = np.abs(freqs[:, None] - np.append(harmonics, 0.0)[None, :]).min(axis=1)
    assert spectrum[distance > 3].max() < 1e-3 * peak  # nothing between harmonics (Hann leakage: +-2 bins)


def test_phase_is_continuous_across_an_f0_change():
    f0 = torch.cat([torch.full((1, 30), 200.0), torch.full((1, 30), 330.0)], dim=1)
    single = harmonic_source(f0, HOP, RATE, max_harmonics=1)[0].double()  # level * sin(phase)
    level = float(single.abs().max())
    # a sinusoid of <= 330 Hz moves at most 2 pi 330 / rate x its amplitude per sample; a phase jump would not
    assert float(single.diff().abs().max()) <= level * 2 * math.pi * 330 / RATE * 1.001
    full = harmonic_source(f0, HOP, RATE)[0].double()
    steady = full[40 * HOP :].diff().abs().max()
    assert float(full.diff().abs().max()) <= float(steady) * 1.05  # the change is no rougher than steady 330 Hz


def test_unvoiced_frames_are_silent():
    f0 = torch.full((2, 20), 150.0)
    f0[0, 5:12] = 0.0
    f0[1] = 0.0
    signal = harmonic_source(f0, HOP, RATE)
    assert torch.equal(signal[0, 5 * HOP : 12 * HOP], torch.zeros(7 * HOP))
    assert signal[0, : 5 * HOP].abs().max() > 0.05 and signal[0, 12 * HOP :].abs().max() > 0.05
    assert torch.equal(signal[1], torch.zeros(20 * HOP))


def test_upsampled_f0_interpolates_between_frame_centres_inside_voiced_runs():
    f0 = torch.tensor([[100.0, 200.0, 0.0, 300.0]])
    samples, voiced = upsample_f0(f0, 4)
    assert samples.shape == (1, 16) and voiced.tolist() == [[True] * 8 + [False] * 4 + [True] * 4]
    assert float(samples[0, 1]) == 100.0 and float(samples[0, 6]) == 200.0  # frame centres at 1.5, 5.5
    assert 100.0 < float(samples[0, 3]) < 200.0  # between them
    assert float(samples[0, 14]) == 300.0


def test_ltv_filter_equals_a_slow_per_frame_convolution():
    generator = torch.Generator().manual_seed(0)
    batch, frames, hop, taps = 2, 5, 7, 4
    signal = torch.randn(batch, frames * hop, generator=generator, dtype=torch.float64)
    coefficients = torch.randn(batch, frames, taps, generator=generator, dtype=torch.float64)
    expected = torch.zeros_like(signal)
    for b in range(batch):
        for t in range(frames * hop):
            for j in range(taps):
                if t - j >= 0:
                    expected[b, t] += coefficients[b, t // hop, j] * signal[b, t - j]
    torch.testing.assert_close(ltv_filter(signal, coefficients, hop), expected)


def test_synthesizer_output_is_frames_times_hop_and_a_padded_batch_equals_items_alone():
    torch.manual_seed(0)
    hop = 40
    synth = Synthesizer(12, hop, 8000, NeuCoSVCConfig.preset("tiny")).eval()
    features = torch.randn(2, 9, 12)
    f0 = torch.full((2, 9), 180.0)
    f0[1, 2] = 0.0
    loudness = torch.full((2, 9), -30.0)
    lengths = torch.tensor([9, 6])
    with torch.no_grad():
        out, out_lengths = synth(features, lengths, f0, loudness)
        alone, _ = synth(features[1:, :6], lengths[1:], f0[1:, :6], loudness[1:, :6])
    assert out.shape == (2, 9 * hop) and out_lengths.tolist() == [9 * hop, 6 * hop]
    assert torch.equal(out[1, 6 * hop :], torch.zeros(3 * hop))
    torch.testing.assert_close(out[1, : 6 * hop], alone[0], atol=1e-5, rtol=1e-4)
