"""Spoken term detection metrics: MTWV / ATWV (NIST STD 2006, QUESST 2014) and MAP.

A *trial* is a (query term, document) pair with a detection score (higher: more likely that
the term occurs in the document) and a truth (it does or not). At a decision threshold
``t`` every trial scoring ``>= t`` is a detection, and for each term with at least one true
occurrence

    P_miss(term, t) = 1 - correct(term, t) / true(term)
    P_fa(term, t)   = false_alarms(term, t) / (trials(term) - true(term))

    TWV(t) = 1 - mean_term [ P_miss(term, t) + beta * P_fa(term, t) ]
    beta   = (C_fa / C_miss) * (1 / P_target - 1)

MTWV is the maximum of TWV over one global threshold (including "detect nothing", TWV 0);
ATWV is TWV at a threshold chosen beforehand. Terms without a true occurrence are left out,
as in NIST's scoring. Presets of (C_miss, C_fa, P_target):

* ``quesst`` (the default; SUPERB's QbE follows QUESST 2014): C_miss = 100, C_fa = 1,
  P_target = 0.0008 (beta = 12.49), the values of the MediaEval Spoken Web Search 2013 /
  QUESST 2014 evaluation plans (Anguera et al.), whose trials are query-document pairs.
* ``nist-std``: C/V = 0.1 and P_term = 1e-4 (beta = 999.9), the NIST 2006 Spoken Term
  Detection evaluation plan, whose trials are seconds of speech; very harsh on a few
  hundred document trials.

MAP: for each term with a true occurrence, the documents ranked by score and the average
of the precision at each true document's rank; the mean over terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TWVParams:
    """Costs and prior of the term-weighted value."""

    cost_miss: float = 100.0
    """Cost of missing a true occurrence."""
    cost_fa: float = 1.0
    """Cost of a false alarm."""
    p_target: float = 0.0008
    """Prior probability that a term occurs in a trial."""

    @property
    def beta(self) -> float:
        """Weight of the false-alarm rate against the miss rate."""
        return self.cost_fa / self.cost_miss * (1.0 / self.p_target - 1.0)


TWV_PRESETS: dict[str, TWVParams] = {
    "quesst": TWVParams(100.0, 1.0, 0.0008),
    "nist-std": TWVParams(1.0, 0.1, 1e-4),
}


def _check(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 2:
        raise ValueError(f"scores and truth must both be (terms, documents), got {scores.shape} and {truth.shape}")
    return scores, truth


def twv(scores: np.ndarray, truth: np.ndarray, threshold: float, params: TWVParams = TWVParams()) -> float:
    """TWV of (terms, documents) ``scores`` against ``truth`` at ``threshold`` (terms with no truth skipped)."""
    scores, truth = _check(scores, truth)
    keep = truth.any(axis=1)
    if not keep.any():
        raise ValueError("no term occurs in any document: TWV is undefined")
    scores, truth = scores[keep], truth[keep]
    detected = scores >= threshold
    true = truth.sum(axis=1)
    nontarget = np.maximum(truth.shape[1] - true, 1)
    p_miss = 1.0 - (detected & truth).sum(axis=1) / true
    p_fa = (detected & ~truth).sum(axis=1) / nontarget
    return float(1.0 - np.mean(p_miss + params.beta * p_fa))


def mtwv(scores: np.ndarray, truth: np.ndarray, params: TWVParams = TWVParams()) -> tuple[float, float]:
    """(MTWV, its threshold): TWV maximised over every distinct score as the threshold, or +inf (no detection)."""
    scores, truth = _check(scores, truth)
    if not truth.any():
        raise ValueError("no term occurs in any document: MTWV is undefined")
    best, best_threshold = 0.0, float("inf")  # detecting nothing: P_miss = 1, P_fa = 0, TWV = 0
    for threshold in np.unique(scores[truth.any(axis=1)]):
        value = twv(scores, truth, float(threshold), params)
        if value > best:
            best, best_threshold = value, float(threshold)
    return best, best_threshold


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean precision at the ranks of the true documents, documents sorted by descending score (ties: stable)."""
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=bool)
    if not truth.any():
        raise ValueError("average precision needs at least one true document")
    ranked = truth[np.argsort(-scores, kind="stable")]
    hits = np.cumsum(ranked)
    ranks = np.flatnonzero(ranked) + 1
    return float(np.mean(hits[ranked] / ranks))


def mean_average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """MAP over the terms (rows) with at least one true document."""
    scores, truth = _check(scores, truth)
    rows = [average_precision(s, t) for s, t in zip(scores, truth, strict=True) if t.any()]
    if not rows:
        raise ValueError("no term occurs in any document: MAP is undefined")
    return float(np.mean(rows))
