"""The reference probe for verification: cosine scoring of standardised, mean-pooled frozen features.

Nothing is trained, so the probe cannot under-train: every utterance is the mean over its
valid frames of the frozen upstream's features (its uniform layer mix, or one ``layer``),
each dimension is standardised with the mean and standard deviation of a reference set of
utterances, and trials are scored by the cosine of the standardised vectors. Standardising
matters for features whose dimensions have very different scales or a large shared offset
(raw log mel energies, un-normalised encoder layers): without it, the cosine mostly measures
the offset every utterance shares. It is the verification analogue of the standardised
logistic-regression probe of utterance classification (SUPERB-style reports put a probe that
cannot under-train beside every trained head).

The reference set is the training data (a run's training dir, or ``--cohort-dir``), at most
``config.cohort_size`` utterances drawn with ``config.trials_seed``; without one, the
evaluation data's own statistics (no labels are read: the statistics are label-free).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from audiossl.data.kaldi import DataDir
from audiossl.data.subset import subset
from audiossl.downstream.trainer import resolve_device
from audiossl.downstream.upstream import load_upstream, parse_fbank_spec
from audiossl.fileio import atomic_write
from audiossl_sv.evaluation import embed_data_dir, evaluate_embeddings
from audiossl_sv.trials import check_verification_data

#: Name of the probe in reports and on the command line (``--head linear-probe``).
PROBE_NAME = "linear-probe"


def feature_statistics(vectors: np.ndarray, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean (D,) and population standard deviation (D,) of ``vectors`` (N, D).

    A standard deviation below ``floor`` (a constant dimension) is raised to it, so that
    dimension standardises to about zero instead of dividing by zero.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors.mean(axis=0), np.maximum(vectors.std(axis=0), floor)


def standardise(table: Mapping[str, np.ndarray], mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """``{id: (x - mean) / std}`` as float32 vectors."""
    return {utt: ((np.asarray(v, dtype=np.float64) - mean) / std).astype(np.float32) for utt, v in table.items()}


def reference_data(stats_dir: str | Path, size: int, seed: int) -> DataDir:
    """Up to ``size`` utterances of ``stats_dir`` (a seeded draw, kept in corpus order)."""
    data = DataDir.load(stats_dir)
    ids = data.utterance_ids
    if len(ids) > size:
        rng = np.random.default_rng(seed)
        data = subset(data, [ids[i] for i in sorted(rng.choice(len(ids), size=size, replace=False))])
    return data


def probe_spec(upstream_spec: str) -> str:
    """The upstream the probe pools: ``fbank`` (utterance CMVN) becomes ``fbank-raw`` with the same rate and bins."""
    fbank = parse_fbank_spec(upstream_spec)
    if fbank is None or not fbank[2]:
        return upstream_spec
    rate, bins, _ = fbank
    return f"fbank-raw:{rate}:{bins}"


def probe_embeddings(
    upstream: nn.Module,
    data_dir: str | Path,
    config: Any,
    *,
    layer: int | None = None,
    stats_dir: str | Path | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """Standardised mean-pooled features of every utterance of ``data_dir``, and where the statistics came from."""
    table = embed_data_dir(upstream, data_dir, layer=layer)
    if stats_dir is not None:
        reference = embed_data_dir(upstream, reference_data(stats_dir, config.cohort_size, config.trials_seed))
        source = str(Path(stats_dir).resolve())
    else:
        reference, source = table, f"{Path(data_dir).resolve()} (the evaluation data, label-free)"
    mean, std = feature_statistics(np.stack(list(reference.values())))
    return standardise(table, mean, std), source


def evaluate_probe(
    upstream_spec: str,
    data_dir: str | Path,
    out_dir: str | Path,
    config: Any,
    *,
    layer: int | None = None,
    stats_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Score the trials of ``data_dir`` with the probe; write scores, embeddings, det.png and metrics.json.

    Returns the metrics and the report written to ``OUT/metrics.json``. ``config`` gives the
    trials (file, or size and seed of a generated list); its score normalisation is not used:
    standardisation already centres the features, and the probe stays closed-form. ``seed``
    initialises a ``random:`` upstream (a run's seed, so the probe sees the run's random encoder).
    """
    check_verification_data(data_dir, config.trials)  # labels or trials exist, before any audio is read
    spec = probe_spec(upstream_spec)
    upstream = load_upstream(spec, seed=seed).to(resolve_device(device)).eval()
    table, source = probe_embeddings(upstream, data_dir, config, layer=layer, stats_dir=stats_dir)
    which = "layer mix" if layer is None else f"layer {layer}"
    plain = dataclasses.replace(config, score_norm="none")
    metrics = evaluate_embeddings(table, data_dir, out_dir, plain, title=f"{PROBE_NAME}: standardised {which}")
    report = {
        "task": "sv",
        "head": PROBE_NAME,
        "metrics": metrics,
        "baseline": f"cosine of standardised mean-pooled {which}, no training",
        "statistics_from": source,
        "upstream": upstream.spec,
        "data_dir": str(Path(data_dir).resolve()),
    }
    with atomic_write(Path(out_dir) / "metrics.json") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return metrics, report
