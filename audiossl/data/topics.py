"""HuBERTopic: a topic model over each utterance's bag of pseudo-labels, as an utterance-level target.

Maekaku et al. (2023), "HuBERTopic: Enhancing Semantic Representation of HuBERT through
Self-supervision Utilizing Topic Model", treat an utterance's frame pseudo-labels (the k-means
clusters HuBERT predicts) as the words of a document, fit latent Dirichlet allocation (LDA) over
the training set, and add a loss that predicts each utterance's topic from its pooled encoder
output. The topics capture utterance-level content (speaker, channel, the words said) that
frame targets alone do not ask for.

Here the topic model is scikit-learn's :class:`~sklearn.decomposition.LatentDirichletAllocation`
(batch variational Bayes) over a sparse (utterances x clusters) count matrix. It is fitted once
per label dir, at the start of an iteration, and stored beside the labels in ``topics-<T>/``:

* ``utt2topic``: the dominant topic of every utterance (a Kaldi-style table);
* ``topic_dist``: its topic distribution (T floats per utterance);
* ``info.json``: the settings it was fitted with (written last: a dir without it is incomplete).

A stored model fitted with other settings is refitted, so the targets always match the config.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from audiossl.data.kaldi import read_table, write_table
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write

logger = logging.getLogger(__name__)

UTT2TOPIC = "utt2topic"
TOPIC_DIST = "topic_dist"
TOPIC_INFO = "info.json"


@dataclass(kw_only=True)
class TopicConfig:
    """HuBERTopic's auxiliary task: LDA topics of pseudo-label bags, predicted from pooled encoder output."""

    num_topics: int = 10
    """Topics T of the LDA model (the classes of the utterance-level task)."""

    weight: float = 0.1
    """Weight of the topic loss in the total (the masked prediction loss has weight 1)."""

    target: Literal["dominant", "distribution"] = "dominant"
    """Predict the utterance's most probable topic (cross-entropy with a hard label) or its whole topic
    distribution (cross-entropy with soft targets)."""

    max_iter: int = 20
    """Passes of LDA's batch variational Bayes over the training bags."""

    seed: int = 0
    """Seed of LDA's initialisation."""

    def __post_init__(self) -> None:
        if self.num_topics < 2:
            raise ConfigError(f"topic.num_topics must be >= 2, got {self.num_topics}")
        if self.weight < 0:
            raise ConfigError(f"topic.weight must be >= 0, got {self.weight}")
        if self.max_iter < 1:
            raise ConfigError(f"topic.max_iter must be >= 1, got {self.max_iter}")


@dataclass
class Topics:
    """Fitted topics: per utterance its distribution over T topics and its dominant topic."""

    distribution: dict[str, np.ndarray]
    """Utterance id -> (T,) float32 topic distribution (sums to 1)."""

    @property
    def dominant(self) -> dict[str, int]:
        """Utterance id -> index of its most probable topic."""
        return {utt: int(np.argmax(values)) for utt, values in self.distribution.items()}

    def targets(
        self, ids: list[str], kind: str, device: torch.device | str = "cpu", source: Path | None = None
    ) -> torch.Tensor:
        """Targets of a batch: (B,) long dominant topics, or (B, T) float distributions."""
        missing = [utt for utt in ids if utt not in self.distribution]
        if missing:
            raise DataError(
                f"no topic for utterance {missing[0]!r} (was it in the labels the topics were fitted on?)", source
            )
        if kind == "dominant":
            dominant = [int(np.argmax(self.distribution[utt])) for utt in ids]
            return torch.tensor(dominant, dtype=torch.long, device=device)  # (B,)
        rows = np.stack([self.distribution[utt] for utt in ids])  # (B, T)
        return torch.from_numpy(rows).to(device=device, dtype=torch.float32)


def label_bags(labels: Mapping[str, torch.Tensor], n_clusters: int):
    """Sparse (utterances, clusters) count matrix of the labels and the utterance ids of its rows."""
    from scipy.sparse import csr_matrix

    ids = sorted(labels)
    rows, cols, counts = [], [], []
    for row, utt in enumerate(ids):
        values = labels[utt].to(torch.int64)
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= n_clusters):
            raise DataError(f"labels of {utt!r} fall outside 0..{n_clusters - 1}")
        bag = torch.bincount(values, minlength=n_clusters).numpy()  # (K,)
        present = np.nonzero(bag)[0]
        rows.append(np.full(len(present), row))
        cols.append(present)
        counts.append(bag[present])
    matrix = csr_matrix(
        (np.concatenate(counts or [[]]), (np.concatenate(rows or [[]]), np.concatenate(cols or [[]]))),
        shape=(len(ids), n_clusters),
        dtype=np.float64,
    )
    return matrix, ids


def fit_topics(labels: Mapping[str, torch.Tensor], n_clusters: int, config: TopicConfig) -> Topics:
    """Fit LDA with ``config.num_topics`` topics over the label bags; every utterance's topic distribution."""
    from sklearn.decomposition import LatentDirichletAllocation

    if len(labels) < 2:
        raise DataError(f"a topic model needs at least 2 utterances, got {len(labels)}")
    matrix, ids = label_bags(labels, n_clusters)
    lda = LatentDirichletAllocation(
        n_components=config.num_topics,
        learning_method="batch",
        max_iter=config.max_iter,
        random_state=config.seed,
    )
    distribution = lda.fit_transform(matrix).astype(np.float32)  # (N, T), rows sum to 1
    return Topics(dict(zip(ids, distribution, strict=True)))


def topics_dir(label_dir: str | Path, config: TopicConfig) -> Path:
    """Where the topics of ``config`` live beside the labels of ``label_dir``."""
    return Path(label_dir) / f"topics-{config.num_topics}"


def _settings(config: TopicConfig, n_clusters: int) -> dict[str, object]:
    settings = {key: value for key, value in asdict(config).items() if key in ("num_topics", "max_iter", "seed")}
    return {**settings, "n_clusters": n_clusters}


def write_topics(path: str | Path, topics: Topics, settings: Mapping[str, object]) -> Path:
    """Write a topics dir (tables first, ``info.json`` last, each atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_table(path / UTT2TOPIC, {utt: str(topic) for utt, topic in topics.dominant.items()})
    write_table(
        path / TOPIC_DIST,
        {utt: " ".join(f"{value:.6g}" for value in values.tolist()) for utt, values in topics.distribution.items()},
    )
    with atomic_write(path / TOPIC_INFO) as handle:
        json.dump({**settings, "utterances": len(topics.distribution)}, handle, indent=1)
        handle.write("\n")
    return path


def read_topics(path: str | Path) -> Topics:
    """Read a topics dir written by :func:`write_topics`."""
    path = Path(path)
    table = read_table(path / TOPIC_DIST)
    distribution = {}
    for utt, value in table.items():
        try:
            distribution[utt] = np.array([float(x) for x in value.split()], dtype=np.float32)
        except ValueError:
            raise DataError(f"topic distribution of {utt!r} is not a list of numbers", path / TOPIC_DIST) from None
    return Topics(distribution)


def ensure_topics(
    label_dir: str | Path, labels: Mapping[str, torch.Tensor], n_clusters: int, config: TopicConfig
) -> tuple[Topics, Path]:
    """The topics of ``config`` for a label dir: read when stored with the same settings, else fitted and stored."""
    path = topics_dir(label_dir, config)
    settings = _settings(config, n_clusters)
    info = path / TOPIC_INFO
    if info.is_file():
        stored = json.loads(info.read_text(encoding="utf-8"))
        if {key: stored.get(key) for key in settings} == settings and stored.get("utterances") == len(labels):
            return read_topics(path), path
        logger.info("topics in %s were fitted with other settings: fitting again", path)
    logger.info("fitting %d LDA topics over the label bags of %d utterances", config.num_topics, len(labels))
    topics = fit_topics(labels, n_clusters, config)
    write_topics(path, topics, settings)
    return topics, path
