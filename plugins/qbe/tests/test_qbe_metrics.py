"""Subsequence DTW against a slow loop and librosa; MTWV and MAP against hand-computed cases and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from audiossl_qbe.dtw import subsequence_dtw
from audiossl_qbe.metrics import TWVParams, average_precision, mean_average_precision, mtwv, twv


def slow_subsequence_dtw(query: np.ndarray, document: np.ndarray) -> float:
    """The textbook recursion, one cell at a time."""
    n, m = len(query), len(document)
    cost = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            a, b = query[i], document[j]
            cost[i, j] = 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    acc = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            if i == 0:
                acc[i, j] = cost[i, j]
                continue
            best = acc[i - 1, j]
            if j > 0:
                best = min(best, acc[i - 1, j - 1], acc[i, j - 1])
            acc[i, j] = cost[i, j] + best
    return acc[-1].min() / n


def test_dtw_equals_the_slow_loop_with_padding():
    rng = np.random.default_rng(0)
    query = rng.standard_normal((6, 4))
    docs = [rng.standard_normal((m, 4)) for m in (9, 14, 6)]
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(d) for d in docs], batch_first=True)
    padded[0, 9:] = 5.0  # padding content must not matter
    got = subsequence_dtw(torch.tensor(query), padded, torch.tensor([9, 14, 6]))
    want = [slow_subsequence_dtw(query, d) for d in docs]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_dtw_agrees_with_librosa_subsequence_dtw():
    librosa = pytest.importorskip("librosa", reason="librosa is the independent reference")
    rng = np.random.default_rng(1)
    query, doc = rng.standard_normal((7, 3)), rng.standard_normal((20, 3))
    acc, _ = librosa.sequence.dtw(query.T, doc.T, metric="cosine", subseq=True)
    got = subsequence_dtw(torch.tensor(query), torch.tensor(doc)[None], torch.tensor([20]))
    assert float(got[0]) == pytest.approx(acc[-1].min() / 7, rel=1e-5)


def test_a_query_cut_from_the_document_costs_zero_there():
    rng = np.random.default_rng(2)
    doc = rng.standard_normal((30, 5))
    got = subsequence_dtw(torch.tensor(doc[10:18]), torch.tensor(doc)[None], torch.tensor([30]))
    assert float(got[0]) == pytest.approx(0.0, abs=1e-6)


# Two terms x four documents, worked by hand in the comments with beta = 1.
SCORES = np.array([[0.9, 0.4, 0.5, 0.1], [0.2, 0.8, 0.3, 0.6]])
TRUTH = np.array([[1, 1, 0, 0], [0, 1, 0, 0]], dtype=bool)
BETA_ONE = TWVParams(cost_miss=1.0, cost_fa=1.0, p_target=0.5)


def test_twv_hand_computed():
    assert BETA_ONE.beta == pytest.approx(1.0)
    # t=0.9: A miss 1/2, fa 0; B miss 1, fa 0 -> 1 - (0.5 + 1) / 2
    assert twv(SCORES, TRUTH, 0.9, BETA_ONE) == pytest.approx(0.25)
    # t=0.6: A miss 1/2; B miss 0, fa 1/3 -> 1 - (0.5 + 1/3) / 2
    assert twv(SCORES, TRUTH, 0.6, BETA_ONE) == pytest.approx(1 - (0.5 + 1 / 3) / 2)
    # t=0.5: A miss 1/2, fa 1/2; B fa 1/3
    assert twv(SCORES, TRUTH, 0.5, BETA_ONE) == pytest.approx(1 - (1 + 1 / 3) / 2)


def test_mtwv_hand_computed_and_terms_without_truth_skipped():
    value, threshold = mtwv(SCORES, TRUTH, BETA_ONE)  # t=0.8: A miss 1/2, B perfect -> 0.75
    assert (value, threshold) == (pytest.approx(0.75), 0.8)
    extra = np.vstack([SCORES, [0.99, 0.99, 0.99, 0.99]]), np.vstack([TRUTH, [False] * 4])
    assert mtwv(*extra, BETA_ONE)[0] == pytest.approx(0.75)
    # the QUESST costs: beta = 0.01 * (1 / 0.0008 - 1)
    assert TWVParams().beta == pytest.approx(12.49)
    # hopeless scores: never detecting beats every threshold -> MTWV 0
    assert mtwv(-SCORES * TRUTH + (~TRUTH) * 10, TRUTH)[0] == 0.0


def test_map_hand_computed_and_against_sklearn():
    # A: T F T F by score -> (1/1 + 2/3) / 2; B: its only true document ranks first -> 1
    assert average_precision(SCORES[0], TRUTH[0]) == pytest.approx((1 + 2 / 3) / 2)
    assert mean_average_precision(SCORES, TRUTH) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the independent reference")
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores, truth = rng.random(15), rng.random(15) < 0.3
        truth[0] = True
        assert average_precision(scores, truth) == pytest.approx(metrics.average_precision_score(truth, scores))


def test_no_term_with_a_true_document_is_an_error():
    with pytest.raises(ValueError, match="no term"):
        mtwv(SCORES, np.zeros_like(TRUTH))
