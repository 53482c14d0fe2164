"""Cosine scoring of speaker embeddings, with mean subtraction and adaptive score normalisation.

* Mean subtraction: the mean of a set of embeddings (the training set, or a cohort) is removed
  from every embedding before length normalisation, which centres the cosine geometry on the
  data (a standard step of embedding back-ends, e.g. WeSpeaker's).
* AS-norm (adaptive symmetric score normalisation, Matejka et al., "Analysis of score
  normalization in multilingual speaker recognition", Interspeech 2017): each side of a trial is
  scored against a cohort of impostor embeddings; the mean and standard deviation of its
  ``top_n`` highest cohort scores normalise the trial score, and the two normalised scores are
  averaged: ``0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``. Standard deviations are
  population ones (divide by ``top_n``).

Embeddings are tables ``{utterance id: (D,) vector}``, saved as Kaldi archives (kaldiio) so that
other toolkits read them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from audiossl.errors import DataError
from audiossl.fileio import atomic_write
from audiossl_sv.trials import Trial

Embeddings = Mapping[str, np.ndarray]


def save_embeddings(path: str | Path, embeddings: Embeddings) -> Path:
    """Write ``{id: (D,) float32}`` as a binary Kaldi archive (``xvector.ark`` style), atomically."""
    import kaldiio

    path = Path(path)
    with atomic_write(path, "wb") as handle:
        kaldiio.save_ark(handle, {k: np.asarray(v, dtype=np.float32) for k, v in embeddings.items()})
    return path


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """Read a Kaldi archive of vectors into ``{id: (D,) float32}``."""
    import kaldiio

    path = Path(path)
    if not path.is_file():
        raise DataError("embeddings file not found", path)
    try:
        table = {key: np.asarray(value, dtype=np.float32).reshape(-1) for key, value in kaldiio.load_ark(str(path))}
    except Exception as error:  # kaldiio raises assorted errors on a corrupt archive
        raise DataError(f"cannot read the Kaldi archive ({error})", path) from None
    if not table:
        raise DataError("embeddings file is empty", path)
    return table


def stack(embeddings: Embeddings, ids: Sequence[str] | None = None) -> tuple[list[str], torch.Tensor]:
    """``(ids, (N, D) float32 tensor)`` of ``ids`` (all of them, in table order, by default)."""
    ids = list(embeddings) if ids is None else list(ids)
    matrix = torch.from_numpy(np.stack([np.asarray(embeddings[i], dtype=np.float32) for i in ids]))  # (N, D)
    return ids, matrix


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Cosine similarities (N, M) of rows of ``a`` (N, D) and ``b`` (M, D), computed in row chunks."""
    b = F.normalize(b.float(), dim=-1)
    rows = [F.normalize(part.float(), dim=-1) @ b.T for part in a.split(chunk)]  # [(n, M)]
    return torch.cat(rows) if rows else torch.zeros(0, b.shape[0])


def cohort_statistics(scores: torch.Tensor, top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std (N,) of the ``top_n`` largest values of each row of ``scores`` (N, M)."""
    top = scores.topk(min(top_n, scores.shape[1]), dim=1).values  # (N, K)
    return top.mean(dim=1), top.std(dim=1, unbiased=False).clamp_min(1e-8)


def score_trials(
    embeddings: Embeddings,
    trials: Sequence[Trial],
    mean: np.ndarray | torch.Tensor | None = None,
    cohort: np.ndarray | torch.Tensor | None = None,
    top_n: int = 300,
) -> np.ndarray:
    """Cosine score (N,) of every trial, with optional mean subtraction and AS-norm.

    ``mean`` (D,) is subtracted from every embedding (and from the cohort) first; ``cohort``
    (M, D) turns on AS-norm with the ``top_n`` closest cohort embeddings of each side.
    """
    needed = sorted({t.enroll for t in trials} | {t.test for t in trials})
    missing = [u for u in needed if u not in embeddings]
    if missing:
        raise DataError(f"{len(missing)} utterances of the trials have no embedding, e.g. {missing[0]!r}")
    ids, matrix = stack(embeddings, needed)  # (U, D)
    row = {u: i for i, u in enumerate(ids)}
    centre = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1)  # (1, D)
    if centre is not None:
        matrix = matrix - centre
    matrix = F.normalize(matrix, dim=-1)
    enroll = torch.tensor([row[t.enroll] for t in trials])  # (N,)
    test = torch.tensor([row[t.test] for t in trials])  # (N,)
    scores = (matrix[enroll] * matrix[test]).sum(dim=-1)  # (N,)
    if cohort is not None:
        cohort = torch.as_tensor(cohort, dtype=torch.float32)  # (M, D)
        if centre is not None:
            cohort = cohort - centre
        mu, sd = cohort_statistics(cosine_matrix(matrix, cohort), top_n)  # (U,), (U,)
        scores = 0.5 * ((scores - mu[enroll]) / sd[enroll] + (scores - mu[test]) / sd[test])
    return scores.double().numpy()


def write_scores(path: str | Path, trials: Sequence[Trial], scores: np.ndarray) -> Path:
    """Write ``<label> <enroll> <test> <score>`` lines (a trials file with the score appended), atomically."""
    with atomic_write(path) as handle:
        for trial, score in zip(trials, scores, strict=True):
            handle.write(f"{trial.label} {trial.enroll} {trial.test} {float(score):.6f}\n")
    return Path(path)


def read_scores(path: str | Path) -> tuple[list[Trial], np.ndarray]:
    """Read a scores file written by :func:`write_scores`: the trials and their scores."""
    path = Path(path)
    if not path.is_file():
        raise DataError("scores file not found", path)
    trials, scores = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or fields[0] not in ("0", "1"):
            raise DataError("expected '<label 1/0> <enroll> <test> <score>'", path, number)
        try:
            score = float(fields[3])
        except ValueError:
            raise DataError(f"score {fields[3]!r} is not a number", path, number) from None
        trials.append(Trial(int(fields[0]), fields[1], fields[2], number))
        scores.append(score)
    if not trials:
        raise DataError("scores file has no trials", path)
    return trials, np.asarray(scores)
