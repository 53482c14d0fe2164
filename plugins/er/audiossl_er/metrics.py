"""Emotion recognition scores: confusion matrix, WA and UA, and the report and plot that show them.

WA (weighted accuracy) is the overall accuracy: correct / utterances, so frequent classes
weigh more. UA (unweighted accuracy) is the mean over classes of each class's recall, so every
class weighs the same; with imbalanced classes (IEMOCAP's "neutral" is 4x its "happy") the two
differ and papers report both. Classes absent from the reference labels are left out of UA
(as scikit-learn's ``balanced_accuracy_score``), since their recall is undefined.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audiossl.fileio import atomic_path, atomic_write


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts (K, K): row = reference class, column = predicted class."""
    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    if true.shape != pred.shape:
        raise ValueError(f"{true.size} reference labels but {pred.size} predictions")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def scores_from_confusion(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """``WA``, ``UA`` and ``recall/<class>`` (classes with reference utterances only) from a confusion matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    if total == 0:
        raise ValueError("no utterances to score")
    support = matrix.sum(axis=1)  # (K,) reference utterances per class
    present = support > 0
    recalls = np.diag(matrix)[present] / support[present]
    scores = {"WA": float(np.trace(matrix) / total), "UA": float(recalls.mean())}
    for name, recall in zip(np.asarray(classes)[present], recalls, strict=True):
        scores[f"recall/{name}"] = float(recall)
    return scores


def emotion_scores(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, float]:
    """WA, UA and per-class recalls of integer predictions against integer references."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, len(classes)), classes)


def format_report(scores: dict[str, float], matrix: np.ndarray, classes: Sequence[str]) -> str:
    """A text report: WA and UA named in full, per-class recall, and the confusion matrix."""
    lines = [
        f"WA (weighted accuracy = overall accuracy): {scores['WA']:.4f}",
        f"UA (unweighted accuracy = mean per-class recall): {scores['UA']:.4f}",
        f"utterances: {int(np.asarray(matrix).sum())}",
        "",
        "per-class recall:",
    ]
    for name in classes:
        recall = scores.get(f"recall/{name}")
        lines.append(f"  {name:<12} {'n/a (no reference utterances)' if recall is None else f'{recall:.4f}'}")
    width = max(8, *(len(name) + 1 for name in classes))
    lines += ["", "confusion matrix (rows: reference, columns: predicted):"]
    lines.append(" " * width + "".join(f"{name:>{width}}" for name in classes))
    for name, row in zip(classes, np.asarray(matrix), strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{int(count):>{width}}" for count in row))
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, text: str) -> Path:
    """Write the report atomically."""
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(text)
    return path


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Confusion-matrix PNG: colours are row-normalised (recall), cells show counts; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.7 * len(classes)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    image = axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of reference class")
    axis.set_xticks(range(len(classes)), labels=list(classes), rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), labels=list(classes))
    axis.set_xlabel("predicted")
    axis.set_ylabel("reference")
    for row in range(len(classes)):
        for col in range(len(classes)):
            colour = "white" if rates[row, col] > 0.5 else "black"
            axis.text(col, row, str(int(matrix[row, col])), ha="center", va="center", color=colour, fontsize=9)
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path
