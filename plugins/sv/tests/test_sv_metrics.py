"""EER, minDCF and the DET plot against hand-computed cases, scikit-learn and a slow threshold loop."""

from __future__ import annotations

import numpy as np
import pytest
from audiossl_sv.metrics import compute_eer, compute_min_dcf, error_rates, plot_det, verification_metrics
from sklearn.metrics import roc_curve

from audiossl.errors import DataError


def test_eer_hand_computed():
    # targets 0.9 0.8 0.3, non-targets 0.7 0.2 0.1: at t = 0.7 one target (0.3) is missed and one
    # non-target (0.7) accepted, so P_miss = P_fa = 1/3.
    scores = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0, 0]
    result = compute_eer(scores, labels)
    assert result.eer == pytest.approx(1 / 3)
    assert result.threshold == pytest.approx(0.7)


def test_eer_separable_and_inverted():
    assert compute_eer([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]).eer == 0.0
    assert compute_eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]).eer == 1.0


def test_eer_interpolates_between_operating_points():
    # A target and a non-target tie at 0.5: t=0.5 gives (P_fa 1/2, P_miss 0), t=0.9 gives (0, 1/2);
    # the segment between them crosses P_miss = P_fa at 1/4.
    result = compute_eer([0.5, 0.9, 0.5, 0.1], [1, 1, 0, 0])
    assert result.eer == pytest.approx(0.25)
    assert result.threshold in (0.5, 0.9)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = rng.normal(size=400) + 1.2 * labels
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)  # thresholds descending
    fnr = 1 - tpr
    # scikit-learn's ROC holds the same operating points; the curves cross between two adjacent
    # ones, so the EER lies between the two rates at the last point before and first after.
    i = int(np.argmax(fnr <= fpr))
    low = min(fpr[i - 1], fnr[i - 1], fpr[i], fnr[i])
    high = max(fpr[i - 1], fnr[i - 1], fpr[i], fnr[i])
    eer = compute_eer(scores, labels).eer
    assert low - 1e-12 <= eer <= high + 1e-12
    assert eer == pytest.approx((fpr[i] + fnr[i]) / 2, abs=1.5 / min(labels.sum(), (1 - labels).sum()))


def test_eer_threshold_gives_the_rate():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 2000)
    scores = rng.normal(size=2000) + labels
    result = compute_eer(scores, labels)
    accept = scores >= result.threshold
    miss = np.mean(~accept[labels == 1])
    false_alarm = np.mean(accept[labels == 0])
    assert miss == pytest.approx(result.eer, abs=0.01)
    assert false_alarm == pytest.approx(result.eer, abs=0.01)


def _slow_min_dcf(scores, labels, p_target):
    scores, labels = np.asarray(scores), np.asarray(labels)
    best = np.inf
    for t in list(scores) + [np.inf]:
        p_miss = sum(1 for s, y in zip(scores, labels, strict=True) if y == 1 and s < t) / (labels == 1).sum()
        p_fa = sum(1 for s, y in zip(scores, labels, strict=True) if y == 0 and s >= t) / (labels == 0).sum()
        best = min(best, p_target * p_miss + (1 - p_target) * p_fa)
    return best / min(p_target, 1 - p_target)


@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_min_dcf_matches_threshold_loop(p_target, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 150)
    scores = np.round(rng.normal(size=150) + 2 * labels, 1)  # rounding makes ties
    result = compute_min_dcf(scores, labels, p_target=p_target)
    assert result.min_dcf == pytest.approx(_slow_min_dcf(scores, labels, p_target))
    assert 0.0 <= result.min_dcf <= 1.0


def test_min_dcf_hand_computed():
    # p=0.5: cost = 0.5 (P_miss + P_fa); best at t=0.7 (1/3 + 1/3) or t=0.8 (1/3 + 0): 1/6 / 0.5 = 1/3.
    scores = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
    labels = [1, 1, 1, 0, 0, 0]
    result = compute_min_dcf(scores, labels, p_target=0.5)
    assert result.min_dcf == pytest.approx(1 / 3)
    assert result.threshold == pytest.approx(0.8)
    # p=0.01: a miss costs 0.01/3 each, a false alarm 0.99/3: reject until no false alarm: t=0.8,
    # cost 0.01 * 1/3, normalised by 0.01 -> 1/3.
    assert compute_min_dcf(scores, labels, p_target=0.01).min_dcf == pytest.approx(1 / 3)


def test_error_rates_monotonic():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    rates = error_rates(rng.normal(size=300), labels)
    assert rates.miss[0] == 0 and rates.miss[-1] == 1
    assert rates.false_alarm[0] == 1 and rates.false_alarm[-1] == 0
    assert np.all(np.diff(rates.miss) >= 0) and np.all(np.diff(rates.false_alarm) <= 0)


def test_bad_inputs():
    with pytest.raises(DataError, match="both target and non-target"):
        compute_eer([0.1, 0.2], [1, 1])
    with pytest.raises(DataError, match="NaN"):
        compute_eer([0.1, float("nan")], [1, 0])
    with pytest.raises(DataError, match="1 .target. or 0"):
        compute_eer([0.1, 0.2], [1, 2])


def test_verification_metrics_names():
    metrics = verification_metrics([0.9, 0.8, 0.3, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    assert metrics["eer_percent"] == pytest.approx(100 / 3)
    assert set(metrics) >= {"eer_percent", "eer_threshold", "min_dcf_0.01", "min_dcf_0.05", "num_trials"}


def test_det_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    path = plot_det(
        {"a": (rng.normal(size=200) + 2 * labels, labels), "b": (rng.normal(size=200) + labels, labels)},
        tmp_path / "det.png",
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["det.png"]  # no temporary left behind
