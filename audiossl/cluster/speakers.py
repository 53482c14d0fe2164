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
   pseudo-speakers; :func:`write_pseudo_labels` stores them as a Kaldi table ``utt -> int``
   and, beside it, a per-utterance label store (``utt2pseudo.store``) that training maps
   instead of reading the table into memory.
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

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from audiossl.cluster.kmeans import KMeans, KMeansConfig
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.kaldi import DataDir, write_table
from audiossl.data.labelstore import LabelStoreWriter
from audiossl.data.targets import (
    pseudo_store_path,
    pseudo_table_stamp,
    read_pseudo_labels,  # noqa: F401  (moved to the data layer; re-exported)
)
from audiossl.errors import ConfigError
from audiossl.fileio import atomic_write
from audiossl.models import SpeechEncoder
from audiossl.nn.pooling import masked_mean
from audiossl.nn.pseudo_labels import (  # noqa: F401  (moved to audiossl.nn: objectives use them; re-exported)
    ClusterConfig,
    PseudoSpeakerHead,
    correct_labels,
    loss_gate,
)

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
        config = KMeansConfig(n_clusters=num_speakers, batch_size=min(10000, len(points)), max_iter=100, seed=seed)
        return KMeans(config).fit(points).predict(points).long()
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=num_speakers, metric="cosine", linkage="average")
        return torch.from_numpy(model.fit_predict(points.numpy())).long()
    raise ConfigError(f"unknown clustering method {method!r}; known: kmeans, agglomerative")


def write_pseudo_labels(path: str | Path, ids: Sequence[str], labels: torch.Tensor, *, store: bool = True) -> None:
    """Write ``utt -> pseudo-speaker index`` as a Kaldi table and (``store``) a per-utterance label store.

    The store (``<path>.store``, :mod:`audiossl.data.labelstore`: one uint8/16/32 value per
    utterance in id order, memory-mapped) is what training reads, so memory does not grow
    with the number of utterances; it records the table's size and digest and is ignored once
    the table is edited. Both are written atomically, the table first.
    """
    path = Path(path)
    values = labels.detach().cpu().long()  # (N,)
    write_table(path, {utt: int(label) for utt, label in zip(ids, values.tolist(), strict=True)})
    if store:
        n_classes = int(values.max()) + 1 if len(values) else 1
        with LabelStoreWriter(
            pseudo_store_path(path), n_classes, None, per_utterance=True, info=pseudo_table_stamp(path)
        ) as writer:
            writer.add_many(list(ids), values.numpy())


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
