"""Verification evaluation: embed a data dir, score its trials, report EER / minDCF with a DET plot.

Two ways to get embeddings:

* a trained run: the speaker head's embedding of the upstream's layer mix;
* no training at all (the frozen-embedding baseline): the mean over valid frames of the
  upstream's features -- its uniform layer mix, or one chosen layer -- so any checkpoint can be
  compared without training a head. Not ``fbank``: the core's fbank upstream normalises each
  utterance (CMVN), which leaves nothing for a mean to carry; it is refused (``fbank-raw``, the
  same log mel energies without that normalisation, is the baseline to pool).

The reference probe (:mod:`audiossl_sv.probe`) standardises those pooled features before the cosine.

:func:`evaluate_embeddings` writes into the output dir: ``trials`` (when generated),
``scores`` (``<label> <enroll> <test> <score>``), ``embeddings.ark`` (Kaldi archive),
``det.png`` and returns the metrics (EER in %).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiossl.data.kaldi import DataDir
from audiossl.data.subset import subset
from audiossl.downstream.featurizer import mean_pool
from audiossl.downstream.task import eval_batches
from audiossl.downstream.trainer import resolve_device
from audiossl.downstream.upstream import FbankBaseline, load_upstream
from audiossl.errors import ConfigError
from audiossl.fileio import atomic_write
from audiossl_sv.metrics import plot_det, verification_metrics
from audiossl_sv.scoring import save_embeddings, score_trials, write_scores
from audiossl_sv.trials import Trial, check_verification_data, make_trials, read_trials, write_trials


class _OneLayer(nn.Module):
    """An upstream seen through one encoder layer instead of its layer mix (for the frozen baseline)."""

    def __init__(self, upstream: nn.Module, layer: int):
        super().__init__()
        if not -upstream.num_layers <= layer < upstream.num_layers:
            raise ConfigError(f"layer {layer} out of range: the upstream has {upstream.num_layers} layers")
        self.upstream = upstream
        self.layer = layer
        self.sample_rate = upstream.sample_rate

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.upstream.device
        output = self.upstream.encoder(waveforms.to(device), lengths.to(device)).without_prefix()
        return output.layers[self.layer], output.lengths  # (B, S, D), (B,)


@torch.no_grad()
def embed_data_dir(
    upstream: nn.Module,
    data_dir: str | Path | DataDir,
    *,
    head: nn.Module | None = None,
    layer: int | None = None,
    batch_seconds: float = 60.0,
) -> dict[str, np.ndarray]:
    """``{utterance id: (E,) float32}`` for every utterance of ``data_dir`` (whole utterances, eval mode).

    With ``head`` (an :class:`~audiossl_sv.task.SVHead`): its embedding. Without: the mean-pooled
    upstream features, of its layer mix or of encoder layer ``layer``.
    """
    if head is not None and layer is not None:
        raise ConfigError("a layer can only be chosen for the frozen baseline (no trained head)")
    encoder = getattr(upstream, "encoder", None)
    if head is None and isinstance(encoder, FbankBaseline) and encoder.normalize:
        raise ConfigError(
            "the fbank upstream normalises every utterance to zero mean and unit variance per bin, so its "
            "mean-pooled features are the same for every utterance; pool fbank-raw[:RATE[:BINS]] (the same "
            "log mel energies, not normalised) instead, or train a head on fbank (audiossl sv train -u fbank)"
        )
    source = upstream if layer is None else _OneLayer(upstream, layer)
    upstream.eval()
    if head is not None:
        head.eval()
    out: dict[str, np.ndarray] = {}
    for batch, hidden, lengths in eval_batches(source, data_dir, (), batch_seconds=batch_seconds):
        vectors = head.embed(hidden, lengths) if head is not None else mean_pool(hidden, lengths)  # (B, E)
        for utt, vector in zip(batch.ids, vectors.float().cpu().numpy(), strict=True):
            out[utt] = vector
    return out


def norm_statistics(
    config: Any,
    upstream: nn.Module,
    cohort_dir: str | Path | None,
    *,
    head: nn.Module | None = None,
    layer: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The mean embedding (D,) and the AS-norm cohort (M, D) that ``config.score_norm`` asks for.

    Both come from up to ``config.cohort_size`` utterances of ``cohort_dir`` (the training data
    of a run), drawn with ``config.trials_seed``.
    """
    if config.score_norm == "none":
        return None, None
    if cohort_dir is None or not Path(cohort_dir).is_dir():
        raise ConfigError(f"score_norm {config.score_norm!r} needs a cohort data dir (the training data)", cohort_dir)
    data = DataDir.load(cohort_dir)
    ids = data.utterance_ids
    if len(ids) > config.cohort_size:
        rng = np.random.default_rng(config.trials_seed)
        ids = [ids[i] for i in sorted(rng.choice(len(ids), size=config.cohort_size, replace=False))]
        data = subset(data, ids)
    table = embed_data_dir(upstream, data, head=head, layer=layer)
    matrix = np.stack([table[u] for u in ids])  # (M, D)
    mean = matrix.mean(axis=0) if "mean" in config.score_norm else None
    cohort = matrix if "asnorm" in config.score_norm else None
    return mean, cohort


def resolve_trials(
    data_dir: str | Path, known: Mapping[str, Any], out_dir: str | Path, config: Any
) -> tuple[list[Trial], Path]:
    """The trials to score and their file: ``config.trials``, else ``DATA/trials``, else a generated list.

    A generated list (balanced, ``config.num_trials``, ``config.trials_seed``) is written to
    ``OUT/trials`` so the scores can be reproduced.
    """
    given = Path(config.trials) if config.trials is not None else Path(data_dir) / "trials"
    if config.trials is not None or given.is_file():
        return read_trials(given, known=known), given
    trials = make_trials(Path(data_dir), num_trials=config.num_trials, seed=config.trials_seed)
    return trials, write_trials(Path(out_dir) / "trials", trials)


def evaluate_embeddings(
    embeddings: Mapping[str, np.ndarray],
    data_dir: str | Path,
    out_dir: str | Path,
    config: Any,
    *,
    mean: np.ndarray | None = None,
    cohort: np.ndarray | None = None,
    title: str = "speaker verification",
) -> dict[str, float]:
    """Score the data dir's trials with ``embeddings``; write scores, embeddings and a DET plot; return metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials, _ = resolve_trials(data_dir, embeddings, out_dir, config)
    scores = score_trials(embeddings, trials, mean=mean, cohort=cohort, top_n=config.top_n)
    labels = np.array([t.label for t in trials])
    write_scores(out_dir / "scores", trials, scores)
    save_embeddings(out_dir / "embeddings.ark", embeddings)
    metrics = verification_metrics(scores, labels)
    plot_det({title: (scores, labels)}, out_dir / "det.png", title=f"DET: {title}")
    return metrics


def evaluate_frozen(
    upstream_spec: str,
    data_dir: str | Path,
    out_dir: str | Path,
    config: Any,
    *,
    layer: int | None = None,
    cohort_dir: str | Path | None = None,
    device: str = "auto",
) -> dict[str, float]:
    """The frozen-embedding baseline: cosine scoring of mean-pooled upstream features, no training.

    Writes what :func:`evaluate_embeddings` writes plus ``metrics.json``.
    """
    check_verification_data(data_dir, config.trials)  # trials or speaker labels exist, before any audio is read
    upstream = load_upstream(upstream_spec).to(resolve_device(device)).eval()
    embeddings = embed_data_dir(upstream, data_dir, layer=layer)
    mean, cohort = norm_statistics(config, upstream, cohort_dir, layer=layer)
    which = "layer mix" if layer is None else f"layer {layer}"
    metrics = evaluate_embeddings(
        embeddings, data_dir, out_dir, config, mean=mean, cohort=cohort, title=f"mean-pooled {which}"
    )
    report = {
        "task": "sv",
        "metrics": metrics,
        "baseline": f"mean-pooled {which}, no training",
        "score_norm": config.score_norm,
        "upstream": upstream.spec,
        "data_dir": str(Path(data_dir).resolve()),
    }
    with atomic_write(Path(out_dir) / "metrics.json") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return metrics
