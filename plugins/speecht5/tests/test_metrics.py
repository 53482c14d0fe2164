"""MCD-DTW against a slow per-frame DTW written here; BLEU against sacrebleu's own corpus_bleu."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
import scipy.fft

from audiossl.errors import DataError
from audiossl_speecht5.metrics import MCDAnalysis, corpus_bleu, corpus_mcd, mcd_dtw, mel_cepstrum


def _slow_mcd(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Per-frame MCD, textbook DTW (cumulative cost, backtrack), mean over the path: loops only."""
    n, m = len(a), len(b)

    def dist(i: int, j: int) -> float:
        return 10.0 / math.log(10.0) * math.sqrt(2.0 * sum((a[i, d] - b[j, d]) ** 2 for d in range(a.shape[1])))

    acc = [[math.inf] * m for _ in range(n)]
    for i in range(n):
        for j in range(m):
            best = 0.0 if i == j == 0 else math.inf
            if i > 0 and j > 0:
                best = min(best, acc[i - 1][j - 1])
            if j > 0:
                best = min(best, acc[i][j - 1])
            if i > 0:
                best = min(best, acc[i - 1][j])
            acc[i][j] = dist(i, j) + best
    i, j, path = n - 1, m - 1, [(n - 1, m - 1)]
    while (i, j) != (0, 0):
        options = []
        if i > 0 and j > 0:
            options.append((acc[i - 1][j - 1], i - 1, j - 1))
        if j > 0:
            options.append((acc[i][j - 1], i, j - 1))
        if i > 0:
            options.append((acc[i - 1][j], i - 1, j))
        _, i, j = min(options)
        path.append((i, j))
    return sum(dist(p, q) for p, q in path) / len(path), len(path)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 7), (9, 4), (23, 31)])
def test_mcd_dtw_equals_a_slow_dtw(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    a, b = rng.normal(size=(n, 5)), rng.normal(size=(m, 5))
    value, length = mcd_dtw(a, b)
    expected, expected_length = _slow_mcd(a, b)
    assert value == pytest.approx(expected, rel=1e-10)
    assert length == expected_length


def test_mcd_of_identical_and_time_stretched_sequences_is_zero() -> None:
    a = np.random.default_rng(1).normal(size=(12, 24))
    assert mcd_dtw(a, a)[0] == 0.0
    assert mcd_dtw(a, np.repeat(a, 2, axis=0))[0] == pytest.approx(0.0, abs=1e-12)  # DTW absorbs the stretch


def test_mel_cepstrum_is_the_orthonormal_dct_without_c0() -> None:
    log_mel = np.random.default_rng(2).normal(size=(3, 40))
    n = np.arange(40)
    basis = np.cos(np.pi * (n[:, None] + 0.5) * np.arange(40)[None, :] / 40) * math.sqrt(2 / 40)  # DCT-II, k >= 1
    assert np.allclose(mel_cepstrum(log_mel, 10), log_mel @ basis[:, 1:11])
    assert np.allclose(scipy.fft.idct(scipy.fft.dct(log_mel, norm="ortho"), norm="ortho"), log_mel)


def test_waveform_mcd_orders_distortions() -> None:
    rate = 16000
    t = np.arange(rate // 2) / rate
    clean = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    rng = np.random.default_rng(3)
    analysis = MCDAnalysis(rate)
    ref = analysis(clean)
    small = analysis(clean + 0.003 * rng.normal(size=clean.shape))
    large = analysis(clean + 0.05 * rng.normal(size=clean.shape))
    result = corpus_mcd([(ref, small), (ref, large)])
    assert mcd_dtw(ref, small)[0] < mcd_dtw(ref, large)[0]
    assert result.utterances == 2 and result.mean == pytest.approx(
        (mcd_dtw(ref, small)[0] + mcd_dtw(ref, large)[0]) / 2
    )


def test_bleu_equals_sacrebleu_corpus_bleu_in_id_order() -> None:
    references = {"u3": "lunu sol chai", "u1": "klavo poma dora vino", "u2": "roza lupo nevi pesko foko"}
    hypotheses = {"u1": "klavo poma vino", "u2": "roza lupo nevi pesko foko", "u3": "sol lunu chai"}
    ours = corpus_bleu(references, hypotheses)
    ids = list(references)
    theirs = sacrebleu.corpus_bleu([hypotheses[u] for u in ids], [[references[u] for u in ids]])
    assert ours.score == pytest.approx(theirs.score)
    assert ours.precisions == pytest.approx(tuple(theirs.precisions))
    assert ours.brevity_penalty == pytest.approx(theirs.bp)
    assert (ours.hypothesis_length, ours.reference_length) == (theirs.sys_len, theirs.ref_len)
    assert corpus_bleu(references, references).score == pytest.approx(100.0)


def test_bleu_missing_and_stray_ids_are_errors() -> None:
    with pytest.raises(DataError, match="1 reference\\(s\\) have no hypothesis, e.g. 'b'"):
        corpus_bleu({"a": "x y", "b": "y"}, {"a": "x y"})
    with pytest.raises(DataError, match="not in the references, e.g. 'c'"):
        corpus_bleu({"a": "x y"}, {"a": "x y", "c": "z"})
