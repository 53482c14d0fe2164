"""Cosine scoring, mean subtraction and AS-norm against slow per-trial loops; embedding and score files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from audiossl_sv.scoring import load_embeddings, read_scores, save_embeddings, score_trials, write_scores
from audiossl_sv.trials import Trial

from audiossl.errors import DataError


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _setup(seed=0, utts=12, dim=8):
    rng = np.random.default_rng(seed)
    embeddings = {f"u{i}": rng.normal(size=dim).astype(np.float32) for i in range(utts)}
    trials = [Trial(int(rng.integers(0, 2)), f"u{a}", f"u{b}") for a, b in rng.integers(0, utts, size=(30, 2))]
    return rng, embeddings, trials


def test_cosine_scores():
    _, embeddings, trials = _setup()
    scores = score_trials(embeddings, trials)
    expected = [_cos(embeddings[t.enroll], embeddings[t.test]) for t in trials]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_mean_subtraction():
    rng, embeddings, trials = _setup(1)
    mean = rng.normal(size=8).astype(np.float32)
    scores = score_trials(embeddings, trials, mean=mean)
    expected = [_cos(embeddings[t.enroll] - mean, embeddings[t.test] - mean) for t in trials]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def _slow_as_norm(embeddings, trials, cohort, top_n, mean=None):
    def centred(x):
        return x if mean is None else x - mean

    out = []
    for t in trials:
        e, s = centred(embeddings[t.enroll]), centred(embeddings[t.test])
        raw = _cos(e, s)
        normalised = []
        for side in (e, s):
            cohort_scores = sorted((_cos(side, centred(c)) for c in cohort), reverse=True)[:top_n]
            mu = sum(cohort_scores) / len(cohort_scores)
            sd = math.sqrt(sum((c - mu) ** 2 for c in cohort_scores) / len(cohort_scores))
            normalised.append((raw - mu) / sd)
        out.append(0.5 * sum(normalised))
    return out


@pytest.mark.parametrize(("top_n", "with_mean"), [(5, False), (20, True), (1000, False)])
def test_as_norm_matches_loop(top_n, with_mean):
    rng, embeddings, trials = _setup(2)
    cohort = rng.normal(size=(40, 8)).astype(np.float32)
    mean = cohort.mean(axis=0) if with_mean else None
    scores = score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=top_n)
    np.testing.assert_allclose(scores, _slow_as_norm(embeddings, trials, cohort, top_n, mean), rtol=1e-4, atol=1e-4)


def test_missing_embedding():
    _, embeddings, _ = _setup()
    with pytest.raises(DataError, match="'nope'"):
        score_trials(embeddings, [Trial(1, "u1", "nope")])


def test_embeddings_roundtrip(tmp_path):
    _, embeddings, trials = _setup()
    path = save_embeddings(tmp_path / "xvector.ark", embeddings)
    back = load_embeddings(path)
    assert list(back) == list(embeddings)
    for key in embeddings:
        np.testing.assert_array_equal(back[key], embeddings[key])
    with pytest.raises(DataError, match="not found"):
        load_embeddings(tmp_path / "none.ark")


def test_scores_roundtrip(tmp_path):
    _, embeddings, trials = _setup()
    scores = score_trials(embeddings, trials)
    back_trials, back_scores = read_scores(write_scores(tmp_path / "scores", trials, scores))
    assert [(t.label, t.enroll, t.test) for t in back_trials] == [(t.label, t.enroll, t.test) for t in trials]
    np.testing.assert_allclose(back_scores, scores, atol=1e-6)
    (tmp_path / "bad").write_text("1 a b 0.5\n1 a b x\n")
    with pytest.raises(DataError) as error:
        read_scores(tmp_path / "bad")
    assert error.value.line == 2
