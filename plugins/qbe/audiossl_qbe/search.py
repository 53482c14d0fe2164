"""Search spoken queries in spoken documents with one upstream layer, and score the search.

Every layer of the upstream is extracted once per query and document (each alone, batch 1,
so padding never enters a feature); the search then runs per chosen layer: subsequence DTW
cost of every (query, document) pair, negated into a detection score. Queries of one term
are pooled by keeping the best score per document (the term's trial score).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from audiossl.audio.io import load_audio
from audiossl.data.dataset import AudioDataset
from audiossl.downstream.upstream import canonical_spec, load_encoder
from audiossl.errors import AudioError, ConfigError
from audiossl.fileio import atomic_write
from audiossl.progress import progress
from audiossl_qbe.dtw import subsequence_dtw
from audiossl_qbe.metrics import TWV_PRESETS, TWVParams, mean_average_precision, mtwv
from audiossl_qbe.queries import Query, document_truth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerResult:
    """Scores of one layer: MTWV (and its threshold) and MAP."""

    layer: int
    mtwv: float
    threshold: float
    map: float


def _layers(encoder: torch.nn.Module, waveform: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's frames of one waveform (T,) -> L tensors (S, D)."""
    with torch.no_grad():
        output = encoder(waveform[None], torch.tensor([waveform.shape[0]])).without_prefix()
    length = int(output.lengths[0])
    return [layer[0, :length].float() for layer in output.layers]


def query_features(encoder: torch.nn.Module, queries: list[Query]) -> list[list[torch.Tensor]]:
    """Per query, its L layers (S, D) computed on the query's audio span alone."""
    features = []
    for query in progress(queries, desc="queries", unit="query"):
        waveform, _ = load_audio(query.path, encoder.sample_rate, start=query.start, end=query.end)
        layers = _layers(encoder, waveform)
        if layers[0].shape[0] < 2:
            raise AudioError(
                f"query {query.query_id!r} ({query.source}) gives {layers[0].shape[0]} frame(s); too short to match",
                query.path,
            )
        features.append(layers)
    return features


def document_features(encoder: torch.nn.Module, documents: str | Path) -> list[list[torch.Tensor]]:
    """Per document (Kaldi order), its L layers (S, D)."""
    dataset = AudioDataset(documents, sample_rate=encoder.sample_rate)
    return [_layers(encoder, dataset[i].waveform) for i in progress(range(len(dataset)), desc="documents", unit="utt")]


def layer_scores(queries: list[list[torch.Tensor]], documents: list[list[torch.Tensor]], layer: int) -> np.ndarray:
    """Detection scores (Q, B): minus the subsequence DTW cost of every query in every document at ``layer``."""
    frames = [doc[layer] for doc in documents]
    lengths = torch.tensor([f.shape[0] for f in frames])
    padded = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)  # (B, M, D)
    return np.stack([-subsequence_dtw(q[layer], padded, lengths).numpy() for q in queries])


def term_trials(
    queries: list[Query], scores: np.ndarray, truth: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pool the queries of each term: (terms, scores (K, B): best over the term's queries, truth (K, B))."""
    terms = sorted({q.term for q in queries})
    rows = {t: [i for i, q in enumerate(queries) if q.term == t] for t in terms}
    pooled = np.stack([scores[rows[t]].max(axis=0) for t in terms])
    return terms, pooled, np.stack([truth[rows[t][0]] for t in terms])


def evaluate_qbe(
    upstream: str,
    queries: list[Query],
    documents: str | Path,
    out_dir: str | Path,
    *,
    layers: list[int] | None = None,
    twv: str | TWVParams = "quesst",
) -> dict:
    """Search ``queries`` in the data dir ``documents`` with every layer in ``layers`` (default: all).

    Writes ``OUT/layers.csv`` (MTWV, threshold and MAP per layer), ``OUT/scores.txt`` (the best
    layer's ``term document score truth`` trials), ``OUT/layers.png`` and ``OUT/metrics.json``;
    returns the metrics: ``MTWV``, ``MAP`` and ``layer`` of the best layer by MTWV (ties: MAP).
    """
    params = TWV_PRESETS[twv] if isinstance(twv, str) else twv
    if isinstance(twv, str) and twv not in TWV_PRESETS:
        raise ConfigError(f"unknown TWV preset {twv!r}; known: {', '.join(TWV_PRESETS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc_ids, truth = document_truth(documents, queries)  # before any audio: a bad query list fails fast
    spec = canonical_spec(upstream)
    encoder = load_encoder(spec).eval()
    q_feats = query_features(encoder, queries)
    d_feats = document_features(encoder, documents)
    num_layers = len(q_feats[0])
    chosen = list(range(num_layers)) if layers is None else layers
    bad = [k for k in chosen if not 0 <= k < num_layers]
    if bad:
        raise ConfigError(f"layer(s) {bad} out of range: the upstream has layers 0..{num_layers - 1}")
    results, trials = [], {}
    for layer in chosen:
        terms, scores, term_truth = term_trials(queries, layer_scores(q_feats, d_feats, layer), truth)
        value, threshold = mtwv(scores, term_truth, params)
        results.append(LayerResult(layer, value, threshold, mean_average_precision(scores, term_truth)))
        trials[layer] = (terms, scores, term_truth)
        log.info("qbe layer %d: MTWV %.4f MAP %.4f", layer, value, results[-1].map)
    best = max(results, key=lambda r: (r.mtwv, r.map))
    _write_outputs(out_dir, results, best, trials[best.layer], doc_ids)
    metrics = {"MTWV": best.mtwv, "MAP": best.map, "layer": best.layer, "threshold": best.threshold}
    report = {
        "task": "qbe",
        "metrics": metrics,
        "upstream": spec,
        "documents": str(Path(documents).resolve()),
        "queries": len(queries),
        "terms": len(trials[best.layer][0]),
        "twv": {**asdict(params), "beta": params.beta},
        "layers": [asdict(r) for r in results],
    }
    with atomic_write(out_dir / "metrics.json") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return metrics


def _write_outputs(out_dir: Path, results: list[LayerResult], best: LayerResult, trials: tuple, doc_ids: list[str]):
    with atomic_write(out_dir / "layers.csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "MTWV", "threshold", "MAP"])
        for r in results:
            writer.writerow([r.layer, f"{r.mtwv:.4f}", f"{r.threshold:.6f}", f"{r.map:.4f}"])
    terms, scores, truth = trials
    with atomic_write(out_dir / "scores.txt") as handle:
        for k, term in enumerate(terms):
            for b, doc in enumerate(doc_ids):
                handle.write(f"{term.replace(' ', '_')} {doc} {scores[k, b]:.6f} {int(truth[k, b])}\n")
    _plot_layers(out_dir / "layers.png", results, best)


def _plot_layers(path: Path, results: list[LayerResult], best: LayerResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audiossl.fileio import atomic_path

    figure, axis = plt.subplots(figsize=(5, 3))
    layers = [r.layer for r in results]
    axis.plot(layers, [r.mtwv for r in results], marker="o", label="MTWV")
    axis.plot(layers, [r.map for r in results], marker="s", label="MAP")
    axis.axvline(best.layer, color="grey", linestyle=":", label=f"best layer {best.layer}")
    axis.set_xlabel("layer")
    axis.set_ylabel("score")
    axis.set_title("QbE by layer")
    axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
