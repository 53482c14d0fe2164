"""Speaker-verification metrics: equal error rate, minimum detection cost, DET curve.

A trial is accepted when its score is at or above a threshold. Over all thresholds this gives
the miss rate ``P_miss(t)`` (targets scored below ``t``) and the false-alarm rate ``P_fa(t)``
(non-targets scored at or above ``t``).

* EER: the rate where ``P_miss = P_fa``. Between two consecutive operating points the two rates
  are joined by a straight segment and the crossing of that segment with ``P_miss = P_fa`` is
  returned (exact when the curves meet at an operating point, as in a hand-computed case).
* minDCF: ``min_t C_miss P_miss(t) p + C_fa P_fa(t) (1 - p)`` divided by the cost of the best
  threshold-free system, ``min(C_miss p, C_fa (1 - p))`` -- the normalised detection cost of the
  NIST SRE evaluation plans, used by VoxSRC with ``p_target`` 0.05 and 0.01 and unit costs.
* DET curve: ``P_fa`` against ``P_miss`` on normal-deviate (probit) axes (Martin et al., "The DET
  curve in assessment of detection task performance", Eurospeech 1997).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiossl.errors import DataError
from audiossl.fileio import atomic_path


@dataclass(frozen=True)
class ErrorRates:
    """Every operating point of a score set, thresholds ascending (N + 1 points for N distinct scores)."""

    thresholds: np.ndarray
    """(N + 1,) candidate thresholds: the distinct scores ascending, then ``+inf`` (reject everything)."""
    miss: np.ndarray
    """(N + 1,) fraction of target trials scored below each threshold (rises from 0 to 1)."""
    false_alarm: np.ndarray
    """(N + 1,) fraction of non-target trials scored at or above each threshold (falls from 1 to 0)."""


@dataclass(frozen=True)
class EER:
    """The equal error rate and the threshold where it is reached."""

    eer: float
    """Rate (0..1) at which misses and false alarms are equal."""
    threshold: float
    """Threshold (accept when ``score >= threshold``) of the operating point nearest the crossing."""


@dataclass(frozen=True)
class DCF:
    """The minimum normalised detection cost at one target prior and the threshold reaching it."""

    min_dcf: float
    """Normalised cost, 0 (perfect) to 1 (no better than always accepting or always rejecting)."""
    threshold: float
    """Threshold reaching it (``+inf``: reject all is best; the lowest score: accept all is best)."""
    p_target: float
    """Prior probability of a target trial."""


def _check(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) differ in length")
    if not np.isfinite(scores).all():
        raise DataError("scores contain NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise DataError("labels must be 1 (target) or 0 (non-target)")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise DataError(f"need both target and non-target trials, got {int(labels.sum())} targets of {labels.size}")
    return scores, labels


def error_rates(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> ErrorRates:
    """Miss and false-alarm rates at every distinct score used as the threshold (and at ``+inf``)."""
    scores, labels = _check(scores, labels)
    target, nontarget = np.sort(scores[labels]), np.sort(scores[~labels])
    thresholds = np.append(np.unique(scores), np.inf)  # (N + 1,)
    # Targets strictly below t are missed; non-targets at or above t are false alarms.
    miss = np.searchsorted(target, thresholds, side="left") / target.size
    false_alarm = 1.0 - np.searchsorted(nontarget, thresholds, side="left") / nontarget.size
    return ErrorRates(thresholds, miss, false_alarm)


def compute_eer(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> EER:
    """Equal error rate of ``scores`` (higher = more likely the same speaker) with 1/0 ``labels``."""
    rates = error_rates(scores, labels)
    gap = rates.miss - rates.false_alarm  # -1 at the lowest score (accept all), +1 at +inf (reject all)
    i = int(np.argmax(gap >= 0))  # first point where misses have caught up with false alarms
    if i == 0:
        return EER(float(rates.miss[0]), float(rates.thresholds[0]))
    alpha = -gap[i - 1] / (gap[i] - gap[i - 1])  # where the segment between points i-1 and i crosses gap = 0
    eer = rates.miss[i - 1] + alpha * (rates.miss[i] - rates.miss[i - 1])
    # Thresholds realise operating points, not the segment between them: give the nearer point's.
    threshold = rates.thresholds[i] if alpha >= 0.5 else rates.thresholds[i - 1]
    return EER(float(eer), float(threshold))


def compute_min_dcf(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> DCF:
    """Minimum normalised detection cost over all thresholds (see the module doc)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    rates = error_rates(scores, labels)
    cost = c_miss * p_target * rates.miss + c_fa * (1.0 - p_target) * rates.false_alarm
    best = int(np.argmin(cost))
    default = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return DCF(float(cost[best] / default), float(rates.thresholds[best]), p_target)


#: Target priors reported by :func:`verification_metrics` (VoxSRC reports both).
P_TARGETS = (0.01, 0.05)


def verification_metrics(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, p_targets: Sequence[float] = P_TARGETS
) -> dict[str, float]:
    """EER in percent (``eer_percent``, and its threshold) and minDCF at each prior (``min_dcf_0.01``, ...)."""
    eer = compute_eer(scores, labels)
    labels_arr = np.asarray(labels)
    out = {
        "eer_percent": 100.0 * eer.eer,
        "eer_threshold": eer.threshold,
        "num_trials": int(labels_arr.size),
        "num_targets": int((labels_arr == 1).sum()),
    }
    for p in p_targets:
        out[f"min_dcf_{p:g}"] = compute_min_dcf(scores, labels, p_target=p).min_dcf
    return out


#: Probability ticks of the DET plot (fractions).
_DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)


def plot_det(
    curves: dict[str, tuple[Sequence[float] | np.ndarray, Sequence[int] | np.ndarray]],
    path: str | Path,
    title: str = "DET curve",
) -> Path:
    """Write a DET plot (PNG) of one or more named ``(scores, labels)`` sets, each marked at its EER."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.special import ndtri  # the probit: inverse of the standard normal CDF

    # Rates of exactly 0 or 1 sit at +-infinity on probit axes: clip them to the plot's edges.
    floor, ceiling = 0.5 * _DET_TICKS[0], 0.995
    probit = lambda p: ndtri(np.clip(p, floor, ceiling))  # noqa: E731

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name, (scores, labels) in curves.items():
        rates = error_rates(scores, labels)
        eer = compute_eer(scores, labels)
        (line,) = ax.plot(probit(rates.false_alarm), probit(rates.miss), label=f"{name} (EER {100 * eer.eer:.2f}%)")
        ax.plot(probit(eer.eer), probit(eer.eer), "o", color=line.get_color())
    ticks = probit(np.asarray(_DET_TICKS))
    labels_text = [f"{100 * t:g}" for t in _DET_TICKS]
    limits = (probit(floor), probit(ceiling))
    ax.plot(limits, limits, ":", color="grey", linewidth=0.8)  # the EER diagonal
    ax.set_xticks(ticks, labels_text)
    ax.set_yticks(ticks, labels_text)
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.set_title(title)
    ax.grid(True, linewidth=0.4)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
