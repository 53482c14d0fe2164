"""WA and UA against scikit-learn and against hand-computed values on an imbalanced case."""

from __future__ import annotations

import numpy as np
import pytest
from audiossl_er.metrics import confusion_matrix, emotion_scores, format_report, plot_confusion, scores_from_confusion
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

CLASSES = ["angry", "happy", "neutral", "sad"]

# Imbalanced by hand: 8 neutral, 4 happy, 2 angry, 1 sad (0 angry, 1 happy, 2 neutral, 3 sad).
TRUE = [2] * 8 + [1] * 4 + [0] * 2 + [3]
PRED = [2, 2, 2, 2, 2, 2, 2, 1] + [1, 1, 2, 2] + [2, 0] + [2]


def test_hand_computed_imbalanced_case():
    scores = emotion_scores(TRUE, PRED, CLASSES)
    # WA: correct 7 + 2 + 1 + 0 = 10 of 15.  UA: mean(1/2, 2/4, 7/8, 0/1) = 1.875 / 4.
    assert scores["WA"] == pytest.approx(10 / 15)
    assert scores["UA"] == pytest.approx((0.5 + 0.5 + 0.875 + 0.0) / 4)
    assert scores["recall/neutral"] == pytest.approx(7 / 8) and scores["recall/sad"] == 0.0
    assert scores["WA"] > scores["UA"]  # the majority class flatters WA


def test_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        true = rng.choice(4, size=50, p=[0.55, 0.25, 0.15, 0.05])
        pred = np.where(rng.random(50) < 0.6, true, rng.integers(0, 4, size=50))
        if trial == 0:
            true, pred = np.array(TRUE), np.array(PRED)
        matrix = confusion_matrix(true, pred, 4)
        np.testing.assert_array_equal(matrix, sk_confusion_matrix(true, pred, labels=range(4)))
        scores = scores_from_confusion(matrix, CLASSES)
        assert scores["WA"] == pytest.approx(accuracy_score(true, pred))
        assert scores["UA"] == pytest.approx(balanced_accuracy_score(true, pred))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_classes_without_reference_utterances_are_left_out_of_ua():
    true, pred = [0, 0, 1, 1], [0, 2, 1, 1]  # class 2 and 3 never in the reference
    scores = emotion_scores(true, pred, CLASSES)
    assert scores["UA"] == pytest.approx(balanced_accuracy_score(true, pred)) == pytest.approx(0.75)
    assert "recall/neutral" not in scores and "recall/sad" not in scores


def test_report_names_wa_and_ua_and_plot_is_written(tmp_path):
    matrix = confusion_matrix(TRUE, PRED, 4)
    scores = scores_from_confusion(matrix, CLASSES)
    report = format_report(scores, matrix, CLASSES)
    assert "WA (weighted accuracy = overall accuracy): 0.6667" in report
    assert "UA (unweighted accuracy = mean per-class recall): 0.4688" in report
    assert "neutral" in report.splitlines()[-2] and report.splitlines()[-2].split()[1:] == ["0", "1", "7", "0"]
    png = plot_confusion(matrix, CLASSES, tmp_path / "confusion.png", title="test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
