"""A classifier over noisy pseudo-labels: AAM-softmax with the dynamic loss-gate and label correction.

The head of the cluster-aware iteration of speaker self-supervision (Han et al., "Self-supervised
speaker verification using dynamic loss-gate and label correction", Interspeech 2022): ``dino``'s
``cluster`` option (:class:`ClusterConfig`) trains :class:`PseudoSpeakerHead` on the student's
pooled embeddings against pseudo-speakers clustered from a previous model
(:mod:`audiossl.cluster.speakers` makes them; :func:`audiossl.data.targets.read_pseudo_labels`
reads them), defending against wrong pseudo-labels with

* the **dynamic loss-gate** (:func:`loss_gate`): every ``gate_every`` steps a 2-component
  Gaussian mixture is fitted to the per-utterance losses seen since the previous fit; samples
  in the low-loss component are reliable and train, the others are left out;
* **label correction** (:func:`correct_labels`): a left-out sample whose prediction has a
  probability above ``correction_threshold`` trains with the predicted class instead.

The head's labels, per-utterance losses and gate are buffers, so a resumed run continues with
exactly the same state. (Moved from :mod:`audiossl.cluster.speakers`, which re-exports it, so
that objectives use it without depending on the clustering room.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.errors import ConfigError, DataError


@dataclass(kw_only=True)
class ClusterConfig:
    """Pseudo-speaker classification of the cluster-aware iteration (Han et al. 2022)."""

    labels: str
    """Kaldi table ``utt -> pseudo-speaker index`` (``audiossl dino cluster`` writes ``utt2pseudo``)."""

    init: str | None = None
    """Deprecated alias of ``run.init_from`` (kept for one release): checkpoint (or run dir) of the previous
    iteration to start from (weights only: student, teacher, heads; the pseudo-speaker classifier stays fresh)."""

    weight: float = 1.0
    """Weight of the classification loss (the DINO loss keeps ``dino_weight``)."""

    margin: float = 0.2
    """Additive angular margin of the AAM-softmax (radians; 0 = normalised softmax)."""

    scale: float = 30.0
    """Scale of the cosine logits."""

    gate_every: int = 100
    """Steps between refits of the loss-gate (about one epoch of the pseudo-labelled data)."""

    gate_after: int = 0
    """Steps before the first gate; until then every sample trains."""

    correction_threshold: float = 0.9
    """A gated-out sample whose top class probability exceeds this trains with that class."""

    persist_corrections: bool = False
    """Write corrected labels back to the table of the run (they then persist across epochs)."""

    def __post_init__(self) -> None:
        if self.gate_every < 1 or self.gate_after < 0:
            raise ConfigError("cluster.gate_every must be >= 1 and cluster.gate_after >= 0")
        if not 0.0 < self.correction_threshold <= 1.0:
            raise ConfigError(f"cluster.correction_threshold must be in (0, 1], got {self.correction_threshold}")
        if self.weight < 0 or self.scale <= 0 or not 0.0 <= self.margin < math.pi / 2:
            raise ConfigError("cluster.weight must be >= 0, cluster.scale > 0, cluster.margin in [0, pi/2)")


# ----------------------------------------------------------------------------- loss-gate and label correction


def loss_gate(losses: torch.Tensor, seed: int = 0) -> tuple[float, torch.Tensor]:
    """The dynamic loss-gate: (threshold, reliable mask (N,)) from per-sample losses (N,).

    A 2-component Gaussian mixture (scikit-learn) is fitted to the losses; the threshold is
    the largest loss assigned to the component with the lower mean, and a sample is reliable
    when its loss is at most the threshold (monotone in the loss, even where the wider
    component would also claim the lowest losses).
    """
    from sklearn.mixture import GaussianMixture

    values = losses.detach().double().cpu().numpy().reshape(-1, 1)
    if len(values) < 2 or float(values.std()) == 0.0:
        return math.inf, torch.ones(len(values), dtype=torch.bool)
    mixture = GaussianMixture(n_components=2, random_state=seed).fit(values)
    low = int(np.argmin(mixture.means_.ravel()))
    assigned = mixture.predict(values) == low
    threshold = float(values[assigned].max()) if assigned.any() else float(values.min())
    return threshold, torch.from_numpy(values.ravel() <= threshold)


def correct_labels(
    labels: torch.Tensor, probabilities: torch.Tensor, unreliable: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label correction: (new labels (N,), changed mask (N,)).

    An unreliable sample (``unreliable`` (N,) bool, e.g. gated out) whose top class
    probability (``probabilities`` (N, C)) exceeds ``threshold`` takes that class; every other
    label is kept.
    """
    confidence, predicted = probabilities.max(dim=1)  # (N,), (N,)
    replace = unreliable & (confidence > threshold)
    new_labels = torch.where(replace, predicted, labels)
    return new_labels, replace & (new_labels != labels)


# ----------------------------------------------------------------------------- the classifier head


class PseudoSpeakerHead(nn.Module):
    """AAM-softmax over pseudo-speakers with the loss-gate and label correction (see the module doc).

    Buffers (saved with the model): ``labels`` (N,) current label of every utterance of the
    table, ``losses`` (N,) its latest loss (valid where ``seen`` (N,) is True: seen since the
    last gate fit), ``gate`` the loss threshold (the
    largest float until the first fit). ``rows(ids)`` maps utterance ids to table rows.
    """

    def __init__(self, config: ClusterConfig, input_dim: int, table: Mapping[str, int]):
        super().__init__()
        self.config = config
        self.ids = sorted(table)
        self.row_of = {utt: row for row, utt in enumerate(self.ids)}
        labels = torch.tensor([table[utt] for utt in self.ids], dtype=torch.int64)  # (N,)
        self.num_classes = int(labels.max()) + 1
        self.weight = nn.Parameter(torch.randn(self.num_classes, input_dim) * input_dim**-0.5)  # (C, D)
        self.register_buffer("labels", labels)
        self.register_buffer("losses", torch.zeros(len(self.ids)))
        self.register_buffer("seen", torch.zeros(len(self.ids), dtype=torch.bool))
        # Finite (checkpoints refuse non-finite tensors): the largest float64 keeps every sample.
        self.register_buffer("gate", torch.tensor(torch.finfo(torch.float64).max, dtype=torch.float64))

    def rows(self, ids: Sequence[str], *, strict: bool = True) -> torch.Tensor:
        """Table rows (B,) of ``ids``; unknown ids are an error with ``strict``, else row -1."""
        missing = [utt for utt in ids if utt not in self.row_of]
        if missing and strict:
            raise DataError(f"utterance {missing[0]!r} has no pseudo-label (and {len(missing) - 1} more)")
        return torch.tensor([self.row_of.get(utt, -1) for utt in ids], dtype=torch.int64)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine of every embedding (B, D) with every class weight: (B, C)."""
        return F.normalize(embeddings.float(), dim=-1) @ F.normalize(self.weight.float(), dim=-1).T

    def per_sample_loss(self, cosines: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """AAM-softmax cross-entropy of each row: cos(theta + m) for the target class, (B, C), (B,) -> (B,)."""
        target = cosines.gather(1, labels.unsqueeze(1)).clamp(-1 + 1e-7, 1 - 1e-7)  # (B, 1)
        with_margin = torch.cos(torch.acos(target) + self.config.margin)
        logits = cosines.scatter(1, labels.unsqueeze(1), with_margin) * self.config.scale
        return F.cross_entropy(logits, labels, reduction="none")

    def forward(self, embeddings: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Gated classification loss of ``embeddings`` (V, B, D) (V views of B utterances) at table ``rows`` (B,).

        Kept: samples under the gate, and gated-out samples whose prediction is confident (they
        train with the predicted class). Returns (mean loss over kept samples, metrics). In
        training mode the per-utterance losses go to ``losses`` and, with
        ``persist_corrections``, corrected labels to ``labels``.
        """
        views, batch = embeddings.shape[:2]
        known = rows >= 0  # (B,)
        safe_rows = rows.clamp_min(0)
        labels = self.labels[safe_rows]  # (B,)
        cosines = self.cosines(embeddings.reshape(views * batch, -1)).view(views, batch, -1)  # (V, B, C)
        loss = torch.stack([self.per_sample_loss(cosines[v], labels) for v in range(views)]).mean(0)  # (B,)
        label_loss = loss.detach()  # (B,) against the clustered labels: what the gate is fitted on
        reliable = label_loss <= self.gate.to(loss.dtype)
        probabilities = (cosines.detach().mean(0) * self.config.scale).softmax(dim=-1)  # (B, C)
        threshold = self.config.correction_threshold
        corrected, changed = correct_labels(labels, probabilities, ~reliable & known, threshold)
        rescued = ~reliable & known & (probabilities.max(dim=-1).values > threshold)
        if bool(changed.any()):
            loss = torch.where(
                changed, torch.stack([self.per_sample_loss(cosines[v], corrected) for v in range(views)]).mean(0), loss
            )
        kept = (reliable | rescued) & known
        total = (loss * kept).sum() / kept.sum().clamp_min(1)
        if self.training:
            with torch.no_grad():
                if self.config.persist_corrections:
                    self.labels[rows[changed & known]] = corrected[changed & known]
                self.losses[rows[known]] = label_loss[known].to(self.losses.dtype)
                self.seen[rows[known]] = True
        accuracy = (probabilities.argmax(dim=-1) == labels).float()[known].mean() if known.any() else loss.new_zeros(())
        metrics = {
            "kept_fraction": kept.float().mean(),
            "corrected_fraction": changed.float().mean(),
            "pseudo_accuracy": accuracy,
        }
        return total, metrics

    @torch.no_grad()
    def refit_gate(self, seed: int = 0) -> float:
        """Refit the loss-gate on the losses seen since the last fit, then forget them; returns the threshold."""
        if int(self.seen.sum()) < 2:
            return float(self.gate)
        threshold, _ = loss_gate(self.losses[self.seen], seed)
        self.seen.fill_(False)
        self.gate.fill_(min(threshold, torch.finfo(torch.float64).max))
        return threshold
