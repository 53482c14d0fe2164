"""SI-SDR / SI-SNR against a slow formula, PIT against brute force, PESQ and STOI against the packages."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from audiossl_enhance.metrics import best_permutation, pesq_wb, pit_loss, si_sdr, si_snr, stoi
from pesq import pesq as package_pesq
from pystoi import stoi as package_stoi

from audiossl.errors import DataError


def slow_si_sdr(estimate: list[float], reference: list[float], zero_mean: bool) -> float:
    """Le Roux et al. 2019, eq. for SI-SDR, one sample at a time in plain Python."""
    if zero_mean:
        mean_e, mean_r = sum(estimate) / len(estimate), sum(reference) / len(reference)
        estimate = [x - mean_e for x in estimate]
        reference = [x - mean_r for x in reference]
    dot = sum(e * r for e, r in zip(estimate, reference, strict=True))
    energy = sum(r * r for r in reference)
    alpha = dot / energy
    target = [alpha * r for r in reference]
    noise = [e - t for e, t in zip(estimate, target, strict=True)]
    return 10 * math.log10(sum(t * t for t in target) / sum(n * n for n in noise))


@pytest.mark.parametrize("zero_mean", [True, False])
def test_si_sdr_matches_slow_formula(zero_mean):
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(3, 500, generator=generator) + 0.3
    estimate = 0.7 * reference + 0.4 * torch.randn(3, 500, generator=generator) - 0.2
    got = si_sdr(estimate, reference, zero_mean=zero_mean)
    for row in range(3):
        expected = slow_si_sdr(estimate[row].tolist(), reference[row].tolist(), zero_mean)
        assert float(got[row]) == pytest.approx(expected, abs=1e-6)


def test_si_snr_is_scale_and_offset_invariant_and_broadcasts():
    generator = torch.Generator().manual_seed(1)
    reference = torch.randn(400, generator=generator)
    estimate = reference + 0.5 * torch.randn(400, generator=generator)
    base = float(si_snr(estimate, reference))
    assert float(si_snr(3.0 * estimate + 0.7, reference)) == pytest.approx(base, abs=1e-6)
    pair = si_sdr(torch.stack([estimate, reference])[:, None], torch.stack([reference, estimate])[None])  # (2, 2)
    assert float(pair[0, 0]) == pytest.approx(base, abs=1e-6)
    assert float(pair[1, 0]) > 100  # a signal against itself


@pytest.mark.parametrize("sources", [2, 3, 4])
def test_pit_matches_brute_force(sources):
    generator = torch.Generator().manual_seed(sources)
    for _ in range(5):
        pairwise = torch.rand(2, sources, sources, generator=generator)
        losses, perms = pit_loss(pairwise)
        for b in range(2):
            brute = min(
                sum(float(pairwise[b, perm[k], k]) for k in range(sources)) / sources
                for perm in itertools.permutations(range(sources))
            )
            assert float(losses[b]) == pytest.approx(brute, abs=1e-6)
            assert sorted(perms[b]) == list(range(sources))
        scores = pairwise[0]
        best = max(
            itertools.permutations(range(sources)), key=lambda p: sum(float(scores[p[k], k]) for k in range(sources))
        )
        assert best_permutation(scores, maximize=True) == list(best)


def test_pit_loss_passes_gradients_through_the_chosen_pairs():
    pairwise = torch.tensor([[[5.0, 1.0], [1.0, 5.0]]], requires_grad=True)
    loss, perms = pit_loss(pairwise)
    loss.sum().backward()
    assert perms == [[1, 0]]
    assert pairwise.grad[0].tolist() == [[0.0, 0.5], [0.5, 0.0]]


def _speechlike(seconds: float = 1.5, rate: int = 16000) -> np.ndarray:
    from audiossl.data.synth import SynthConfig, render_utterance

    audio = render_utterance(SynthConfig(sample_rate=rate, words_per_utt=(3, 3)), 0, 0)[1]
    return np.asarray(audio[: int(seconds * rate)], dtype=np.float64)


def test_pesq_and_stoi_equal_the_packages_and_clean_scores_best():
    clean = _speechlike()
    noisy = clean + 0.3 * clean.std() * np.random.default_rng(0).standard_normal(clean.size)
    assert pesq_wb(clean, noisy, 16000) == pytest.approx(package_pesq(16000, clean, noisy, "wb"), abs=1e-9)
    assert stoi(clean, noisy, 16000) == pytest.approx(package_stoi(clean, noisy, 16000), abs=1e-9)
    assert stoi(clean, noisy, 16000, extended=True) == pytest.approx(
        package_stoi(clean, noisy, 16000, extended=True), abs=1e-9
    )
    assert pesq_wb(clean, clean, 16000) > pesq_wb(clean, noisy, 16000)
    assert stoi(clean, clean, 16000) == pytest.approx(1.0, abs=1e-6)
    assert stoi(clean, noisy, 16000) < 1.0


def test_pesq_refuses_audio_shorter_than_it_needs():
    with pytest.raises(DataError, match="at least 0.25 s"):
        pesq_wb(np.zeros(2000), np.zeros(2000), 16000)


def test_stoi_of_too_little_speech_is_nan_not_the_packages_placeholder():
    clean = _speechlike(seconds=0.2)
    with pytest.warns(RuntimeWarning):
        assert package_stoi(clean, clean, 16000) == pytest.approx(1e-5)
    assert math.isnan(stoi(clean, clean, 16000))
