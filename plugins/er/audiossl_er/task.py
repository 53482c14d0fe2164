"""The emotion recognition task: pooled upstream features -> classifier, trained with cross-entropy.

State (``task_state.json`` in the run dir): the emotion classes of the training data (sorted),
their utterance counts and inverse-frequency weights ``N / (K * n_c)`` (used by the loss when
``class_weights`` is on, so each class contributes as if the classes were balanced).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data.dataset import Batch
from audiossl.data.kaldi import read_entries, write_table
from audiossl.downstream.pooling import POOLINGS, PooledNorm, create_pooling
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches, label_file
from audiossl.errors import ConfigError, DataError
from audiossl.nn.outputs import LossOutput
from audiossl_er import LABEL
from audiossl_er.metrics import confusion_matrix, format_report, plot_confusion, scores_from_confusion, write_report


class EmotionHead(nn.Module):
    """``(hidden (B, S, D), lengths (B,)) -> logits (B, K)``: pooling, [standardise], linear or one-hidden-layer MLP."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        pooling: str = "mean",
        hidden_dim: int = 0,
        dropout: float = 0.1,
        normalize: bool = True,
    ):
        super().__init__()
        self.pool = create_pooling(pooling, dim)
        width = self.pool.out_dim
        self.norm = PooledNorm(width) if normalize else nn.Identity()
        if hidden_dim > 0:
            self.classifier = nn.Sequential(
                nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_classes)
            )
        else:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(self.pool(hidden, lengths)))  # (B, K)


class EmotionTask(DownstreamTask):
    """Utterance-level emotion classification from ``utt2emo``.

    ``pooling``: ``mean``, ``stats`` (mean + std) or ``attentive`` (attentive statistics);
    ``hidden_dim``: 0 for a linear classifier, else the width of a one-hidden-layer MLP;
    ``class_weights``: weight the cross-entropy by inverse class frequency; ``dropout`` before
    the (last) linear layer; ``normalize``: standardise pooled vectors per feature
    (:class:`~audiossl.downstream.pooling.PooledNorm`), so raw features (``fbank-raw``) train
    as well as layer-normed ones.
    """

    name = "er"
    labels = (LABEL,)
    level = "utterance"

    def __init__(
        self,
        pooling: str = "mean",
        hidden_dim: int = 0,
        class_weights: bool = False,
        dropout: float = 0.1,
        normalize: bool = True,
    ):
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS.names())}")
        if hidden_dim < 0 or not 0.0 <= dropout < 1.0:
            raise ConfigError("hidden_dim must be >= 0 and dropout in [0, 1)")
        self.pooling = pooling
        self.hidden_dim = hidden_dim
        self.class_weights = class_weights
        self.dropout = dropout
        self.normalize = normalize

    def options(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "hidden_dim": self.hidden_dim,
            "class_weights": self.class_weights,
            "dropout": self.dropout,
            "normalize": self.normalize,
        }

    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        data = check_labels(train_dir, self.labels)
        counts = Counter(data.labels[LABEL][utt] for utt in data.utterance_ids)
        if len(counts) < 2:
            raise DataError(
                f"need at least two emotion classes to train, found {sorted(counts)}", label_file(train_dir, LABEL)
            )
        classes = sorted(counts)
        total = sum(counts.values())
        weights = [total / (len(classes) * counts[name]) for name in classes]
        return {"classes": classes, "counts": [counts[name] for name in classes], "weights": weights}

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Labels present for every utterance, and every class seen in training (else name file and line)."""
        data = check_labels(data_dir, self.labels)
        known = set(state["classes"])
        path = label_file(data_dir, LABEL)
        utterances = set(data.utterance_ids)
        for entry in read_entries(path):
            if entry.key in utterances and entry.value not in known:
                raise DataError(
                    f"emotion {entry.value!r} (utterance {entry.key!r}) was never seen in training; "
                    f"the model knows: {', '.join(state['classes'])}",
                    path,
                    entry.line,
                )

    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        return EmotionHead(dim, len(state["classes"]), self.pooling, self.hidden_dim, self.dropout, self.normalize)

    def targets(self, batch: Batch, state: TaskState, device: torch.device) -> torch.Tensor:
        """Class indices (B,) of a batch's emotions."""
        index = {name: i for i, name in enumerate(state["classes"])}
        return torch.tensor([index[label] for label in batch.labels[LABEL]], dtype=torch.int64, device=device)

    def loss(
        self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch: Batch, state: TaskState
    ) -> LossOutput:
        logits = head(hidden, lengths).float()  # (B, K)
        targets = self.targets(batch, state, logits.device)
        weight = torch.tensor(state["weights"], device=logits.device) if self.class_weights else None
        loss = F.cross_entropy(logits, targets, weight=weight)
        accuracy = (logits.argmax(dim=-1) == targets).float().mean()
        return LossOutput(total=loss, parts={"ce": loss.detach()}, metrics={"accuracy": float(accuracy)})

    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        """WA, UA, per-class recall; writes utt2emo_pred, report.txt and confusion.png into ``out_dir``."""
        classes = state["classes"]
        predicted: dict[str, str] = {}
        true_ids, pred_ids = [], []
        for batch, hidden, lengths in eval_batches(upstream, data_dir, self.labels):
            best = head(hidden, lengths).argmax(dim=-1).tolist()  # (B,)
            true_ids += self.targets(batch, state, torch.device("cpu")).tolist()
            pred_ids += best
            predicted.update({utt: classes[i] for utt, i in zip(batch.ids, best, strict=True)})
        matrix = confusion_matrix(true_ids, pred_ids, len(classes))
        scores = scores_from_confusion(matrix, classes)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)

        write_table(out_dir / "utt2emo_pred", predicted)
        write_report(out_dir / "report.txt", format_report(scores, matrix, classes))
        title = f"WA {scores['WA']:.3f}  UA {scores['UA']:.3f}  ({Path(data_dir).name})"
        plot_confusion(matrix, classes, out_dir / "confusion.png", title=title)
        return scores
