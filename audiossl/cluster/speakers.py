"""Cluster-aware iteration for speaker self-supervision: pseudo-speakers, loss-gate, label correction.

After DINO pretraining (:mod:`audiossl.objectives.dino`), the second stage of Cluster-Aware
DINO (Han et al., "Self-supervised speaker verification using dynamic loss-gate and label
correction", Interspeech 2022; Chen et al. 2022; Jung et al. 2022) turns the embedding space
into pseudo-speakers and trains a classifier on them, defending against the many wrong
pseudo-labels:

1. :func:`extract_embeddings`: one embedding per utterance, the mean over valid frames of the
   encoder's last layer (the pooled output of a checkpoint loaded with ``load_pretrained``).
2. :func:`cluster_speakers`: k-means (:class:`~audiossl.cluster.kmeans.KMeans`) or
   agglomerative clustering (scikit-learn) of the L2-normalised embeddings into ``k``
   pseudo-speakers; :func:`write_pseudo_labels` stores them as a Kaldi table ``utt -> int``.
3. Training reads that table: ``dino``'s ``cluster`` option (:class:`ClusterConfig`) adds
   :class:`PseudoSpeakerHead`, an AAM-softmax classifier (Deng et al., ArcFace 2019) on the
   student's pooled embeddings, with

   * the **dynamic loss-gate** (:func:`loss_gate`): every ``gate_every`` steps (about an
     epoch) a 2-component Gaussian mixture is fitted to the per-utterance losses seen since the
     previous fit; samples whose loss falls in the low-loss component are reliable and train,
     the others are left out;
   * **label correction** (:func:`correct_labels`): a left-out sample whose prediction has a
     probability above ``correction_threshold`` trains with the predicted class instead. By
     default the correction holds for that step only and the clustered label stays the
     anchor: written back (``persist_corrections``), the corrections feed on themselves, and
     on FSDD every label drifted to one class within two epochs (docs/results.md).

The head's labels, per-utterance losses and gate are buffers, so a resumed run continues
with exactly the same state. Nothing here imports the trainer: :func:`extract_embeddings`
takes any ``(waveforms, lengths) -> EncoderOutput`` module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.models import SpeechEncoder
from audiossl.nn.pooling import masked_mean


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


# ----------------------------------------------------------------------------- embeddings and clusters


mean_pool_output = masked_mean  # the old name: mean over the valid tokens, (B, S, D), (B,) -> (B, D)


@torch.no_grad()
def extract_embeddings(
    model: SpeechEncoder, data_dir: str | Path, *, batch_seconds: float = 64.0, device: str | torch.device = "cpu"
) -> tuple[list[str], torch.Tensor]:
    """Utterance ids and embeddings (N, D): the mean over valid tokens of ``model``'s last layer.

    ``model``: a :class:`~audiossl.models.SpeechEncoder` (e.g. a checkpoint loaded with
    :func:`~audiossl.models.load_pretrained`). Utterances are batched by length.
    """
    from audiossl.data.dataset import AudioDataset, collate

    dataset = AudioDataset(data_dir, sample_rate=model.sample_rate)
    model = model.to(device).eval()
    order = np.argsort(dataset.durations, kind="stable").tolist()
    embeddings: list[torch.Tensor | None] = [None] * len(dataset)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and dataset.durations[order[stop]] * (stop - start + 1) <= batch_seconds:
            stop += 1
        indices = order[start:stop]
        batch = collate(dataset[indices])
        output = model(batch.waveforms.to(device), batch.lengths.to(device)).without_prefix()
        pooled = mean_pool_output(output.last.float(), output.lengths).cpu()  # (B, D)
        for row, index in enumerate(indices):
            embeddings[index] = pooled[row]
        start = stop
    return list(dataset.ids), torch.stack(embeddings)  # (N, D)


def cluster_speakers(
    embeddings: torch.Tensor,
    num_speakers: int,
    *,
    method: Literal["kmeans", "agglomerative"] = "kmeans",
    seed: int = 0,
) -> torch.Tensor:
    """Pseudo-speaker index (N,) int64 of every L2-normalised embedding (N, D).

    ``kmeans``: mini-batch k-means with k-means++ initialisation (spherical in effect, on unit
    vectors); ``agglomerative``: scikit-learn's average-linkage clustering on cosine distances
    (quadratic memory: for tens of thousands of utterances at most).
    """
    if not 1 <= num_speakers <= len(embeddings):
        raise ConfigError(f"num_speakers must be in 1..{len(embeddings)} (the utterances), got {num_speakers}")
    points = F.normalize(embeddings.float(), dim=1)
    if method == "kmeans":
        from audiossl.cluster.kmeans import KMeans, KMeansConfig

        config = KMeansConfig(n_clusters=num_speakers, batch_size=min(10000, len(points)), max_iter=100, seed=seed)
        return KMeans(config).fit(points).predict(points).long()
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=num_speakers, metric="cosine", linkage="average")
        return torch.from_numpy(model.fit_predict(points.numpy())).long()
    raise ConfigError(f"unknown clustering method {method!r}; known: kmeans, agglomerative")


def write_pseudo_labels(path: str | Path, ids: Sequence[str], labels: torch.Tensor) -> None:
    """Write ``utt -> pseudo-speaker index`` as a Kaldi table (atomically)."""
    from audiossl.data.kaldi import write_table

    write_table(path, {utt: int(label) for utt, label in zip(ids, labels.tolist(), strict=True)})


def read_pseudo_labels(path: str | Path) -> dict[str, int]:
    """The table written by :func:`write_pseudo_labels`; bad lines raise a :class:`DataError` with their line."""
    from audiossl.data.kaldi import read_entries

    table = {}
    for entry in read_entries(path):
        line, utt, value = entry.line, entry.key, entry.value
        try:
            label = int(value)
        except ValueError:
            raise DataError(f"pseudo-label of {utt!r} is not an integer: {value!r}", path, line) from None
        if label < 0:
            raise DataError(f"pseudo-label of {utt!r} is negative: {label}", path, line)
        table[utt] = label
    if not table:
        raise DataError("the pseudo-label table is empty", path)
    return table


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


# ----------------------------------------------------------------------------- the whole clustering step


def label_pseudo_speakers(
    model: SpeechEncoder,
    data_dir: str | Path,
    num_speakers: int,
    out_dir: str | Path,
    *,
    method: Literal["kmeans", "agglomerative"] = "kmeans",
    seed: int = 0,
    subtract_mean: bool = True,
) -> dict:
    """Embed, cluster and write ``out_dir/utt2pseudo`` plus ``out_dir/report.json``; returns the report.

    The report gives the cluster sizes and, when the data dir has ``utt2spk``, the adjusted
    rand index and normalised mutual information of the pseudo-speakers against it (a check
    only: the labels themselves never use it). ``subtract_mean`` centres the embeddings before
    their L2 normalisation (mean-pooled encoder outputs share a large common component).
    """
    import json

    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from audiossl.data.kaldi import DataDir
    from audiossl.fileio import atomic_write

    ids, embeddings = extract_embeddings(model, data_dir)
    if subtract_mean:
        embeddings = embeddings - embeddings.mean(dim=0)
    pseudo = cluster_speakers(embeddings, num_speakers, method=method, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_pseudo_labels(out / "utt2pseudo", ids, pseudo)
    report: dict = {
        "utterances": len(ids),
        "num_speakers": num_speakers,
        "method": method,
        "cluster_sizes": torch.bincount(pseudo, minlength=num_speakers).tolist(),
    }
    utt2spk = DataDir.load(data_dir).utt2spk
    if utt2spk and all(utt in utt2spk for utt in ids):
        truth = [utt2spk[utt] for utt in ids]
        report["ari_vs_utt2spk"] = float(adjusted_rand_score(truth, pseudo.numpy()))
        report["nmi_vs_utt2spk"] = float(normalized_mutual_info_score(truth, pseudo.numpy()))
    with atomic_write(out / "report.json") as handle:
        json.dump(report, handle, indent=1)
    return report
