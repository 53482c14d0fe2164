"""Mini-batch k-means in torch, fitted on a stream of feature batches in bounded memory.

The algorithm is the one HuBERT's targets are made with (fairseq's ``learn_kmeans.py`` runs
scikit-learn's ``MiniBatchKMeans``): k-means++ initialisation on a sample (Arthur and
Vassilvitskii 2007, with the greedy variant that keeps the best of ``2 + ln k`` candidates per
centre), then mini-batch updates (Sculley 2010) where every centroid moves towards each of its
points with learning rate ``1 / count``, and early stopping on an exponentially weighted
average of the batch inertia. What differs from scikit-learn, and why:

* **Streaming.** Points arrive as an iterable of ``(N_i, D)`` tensors (one pass per epoch), so
  features never need to be dumped whole. They are re-cut into mini-batches of exactly
  ``batch_size`` points, mixed through a shuffle buffer of ``shuffle_batches`` mini-batches.
  The in-memory :meth:`KMeans.fit` is the streamed fit over the rows of ``x``, in a new random
  order every pass (:func:`epoch_order`), so both give the same centroids for the same seed
  and data order, however the stream is cut. scikit-learn draws random mini-batches (with
  replacement) instead. A stream should be shuffled per pass too: a fixed order makes the
  smoothed inertia drift down pass after pass and delays early stopping
  (``audiossl.cluster.features`` shuffles utterances per epoch).
* **Batched restarts.** The ``n_init`` k-means++ runs share one sample and advance together,
  so each new centre costs one ``(n_init * trials, D) x (D, S)`` matmul instead of
  ``n_init`` skinny ones; the run with the lowest potential on the sample wins (scikit-learn
  draws a sample per run and scores it on another sample).
* **Dead clusters** (``reassignment_ratio > 0``) move to far points of the current batch,
  drawn proportionally to their squared distance (scikit-learn draws batch points
  uniformly), on scikit-learn's schedule. ``reassignment_ratio = 0`` (HuBERT) never moves one.

Distances use ``||x||^2 - 2 x c^T + ||c||^2`` (one matmul per chunk of rows).
Deterministic for a seed, data order and device.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from audiossl.config import from_dict
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path

logger = logging.getLogger(__name__)

#: Largest distance matrix (elements) computed at once; rows are chunked beyond it.
CHUNK_ELEMENTS = 1 << 24

#: Format tag stored in saved models.
FORMAT = "audiossl.kmeans/1"

Batches = Iterable[torch.Tensor] | Callable[[int], Iterable[torch.Tensor]]


@dataclass(kw_only=True)
class KMeansConfig:
    """Options of :class:`KMeans`; the defaults are fairseq's HuBERT settings where it has one."""

    n_clusters: int = 100
    """Number of clusters k (HuBERT: 100 for MFCC targets, 500 for later iterations)."""
    batch_size: int = 10000
    """Points per mini-batch update."""
    max_iter: int = 100
    """Maximum number of passes (epochs) over the data."""
    init_size: int | None = None
    """Points of the k-means++ sample (the first ones of the stream, at most 2^24); None: 3 x batch_size
    (3 x n_clusters if that is smaller than n_clusters), as scikit-learn."""
    n_init: int = 20
    """Number of k-means++ runs on the sample; the one with the lowest potential is kept."""
    init_trials: int | None = None
    """Candidates tried per new centre in greedy k-means++; None: 2 + int(ln k), as scikit-learn."""
    tol: float = 0.0
    """Stop when the squared centroid change of a step is below tol x the mean feature variance (0: off)."""
    max_no_improvement: int | None = 100
    """Stop after this many consecutive steps without a new minimum of the smoothed batch inertia (None: off)."""
    reassignment_ratio: float = 0.0
    """Clusters whose count is below this fraction of the largest count move to far batch points (0: never)."""
    shuffle_batches: int = 4
    """Mini-batches mixed together in the shuffle buffer of the stream (1: no mixing)."""
    seed: int = 0
    """Seed of the k-means++ draws, the shuffle buffer and reassignments."""
    device: str = "cpu"
    """Torch device the centroids live and the distances are computed on."""
    matmul_precision: Literal["ieee", "tf32", "bf16"] = "ieee"
    """Internal precision the backend may use for the float32 matmuls of init and training
    (torch's ``fp32_precision``: ieee is exact float32; tf32/bf16 allow faster reduced-precision
    math where the hardware has it). ``predict`` and ``inertia`` always use ieee."""

    def __post_init__(self) -> None:
        if self.n_clusters < 1:
            raise ConfigError(f"n_clusters must be >= 1, got {self.n_clusters}")
        for name in ("batch_size", "max_iter", "n_init", "shuffle_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.init_size is not None and not self.n_clusters <= self.init_size <= 1 << 24:
            raise ConfigError(f"init_size ({self.init_size}) must be in [n_clusters={self.n_clusters}, 2^24]")
        if self.init_trials is not None and self.init_trials < 1:
            raise ConfigError(f"init_trials must be >= 1, got {self.init_trials}")
        if self.tol < 0 or not 0 <= self.reassignment_ratio <= 1:
            raise ConfigError("tol must be >= 0 and reassignment_ratio in [0, 1]")
        if self.matmul_precision not in ("ieee", "tf32", "bf16"):
            raise ConfigError(f"matmul_precision must be ieee, tf32 or bf16, got {self.matmul_precision!r}")

    @property
    def sample_size(self) -> int:
        """Points in the k-means++ sample."""
        if self.init_size is not None:
            return self.init_size
        return 3 * self.batch_size if 3 * self.batch_size >= self.n_clusters else 3 * self.n_clusters

    @property
    def trials(self) -> int:
        """Candidates per new centre in greedy k-means++."""
        return self.init_trials if self.init_trials is not None else 2 + int(math.log(self.n_clusters))


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Set torch's float32 matmul precision of the CPU (oneDNN) and CUDA backends, restoring it after.

    cuBLAS has no bf16 mode for float32 matmuls: ``bf16`` gives it ``tf32``.
    """
    backends = (torch.backends.mkldnn.matmul, torch.backends.cuda.matmul)
    values = (precision, "tf32" if precision == "bf16" else precision)
    saved = [backend.fp32_precision for backend in backends]
    try:
        for backend, value in zip(backends, values, strict=True):
            backend.fp32_precision = value
        yield
    finally:
        for backend, value in zip(backends, saved, strict=True):
            backend.fp32_precision = value


class Workspace:
    """Reusable scratch tensors, so that repeated steps do not allocate (and page-fault) afresh.

    ``get(name, shape)`` returns a tensor of at least that many rows, reused while the other
    dimensions and dtype stay the same; callers slice it to the rows they need.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        tensor = self.tensors.get(name)
        if tensor is None or tensor.dtype != dtype or tensor.shape[1:] != shape[1:] or tensor.shape[0] < shape[0]:
            tensor = self.tensors[name] = torch.empty(shape, dtype=dtype, device=self.device)
        return tensor[: shape[0]]


def nearest(
    x: torch.Tensor,
    centroids: torch.Tensor,
    centroid_sq: torch.Tensor | None = None,
    workspace: Workspace | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row: ``(labels (N,) int64, squared distances (N,) float32)``.

    ``x`` (N, D) and ``centroids`` (K, D) are float32 on one device; rows are processed in
    chunks so that at most :data:`CHUNK_ELEMENTS` distances exist at once. Ties go to the
    lowest index. Uses whatever matmul precision is in force (see :func:`matmul_precision`).
    With a ``workspace`` the results are views into it, valid until its next use.
    """
    workspace = workspace or Workspace(x.device)
    if centroid_sq is None:
        centroid_sq = torch.linalg.vector_norm(centroids, dim=1).square_()  # (K,)
    n, k = x.shape[0], centroids.shape[0]
    rows = min(n, max(1, CHUNK_ELEMENTS // max(k, 1)))
    labels = workspace.get("labels", n, dtype=torch.int64)  # (N,)
    distances = workspace.get("distances", n)  # (N,)
    partial = workspace.get("partial", rows, k)  # (rows, K)
    for start in range(0, n, rows):
        chunk = x[start : start + rows]  # (n, D)
        size = chunk.shape[0]
        part = torch.addmm(centroid_sq.unsqueeze(0), chunk, centroids.T, alpha=-2.0, out=partial[:size])  # (n, K)
        best, index = torch.min(part, dim=1, out=(distances[start : start + size], labels[start : start + size]))
        best.add_(torch.linalg.vector_norm(chunk, dim=1).square_()).clamp_min_(0.0)
    return labels, distances


def kmeans_plusplus(
    sample: torch.Tensor, n_clusters: int, *, n_init: int, trials: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-means++ run ``n_init`` times at once on ``sample`` (S, D).

    Returns the centres of every run (n_init, K, D) and their potentials (n_init,): the sum
    of squared distances from the sample to its nearest centre. Every new centre is the best
    (lowest resulting potential) of ``trials`` candidates drawn proportionally to D^2.
    """
    size, dim = sample.shape
    device = sample.device
    sample_sq = torch.linalg.vector_norm(sample, dim=1).square_()  # (S,)
    # ||a - s||^2 = [a, ||a||^2, 1] . [-2 s, 1, ||s||^2]: one plain matmul gives every distance.
    ones = torch.ones(size, 1, device=device)
    left = torch.cat([sample, sample_sq.unsqueeze(1), ones], dim=1)  # (S, D + 2)
    right = torch.cat([-2.0 * sample, ones, sample_sq.unsqueeze(1)], dim=1)  # (S, D + 2)
    gram = torch.empty(n_init * trials, size, device=device)  # (I * T, S)

    def squared_to(index: torch.Tensor) -> torch.Tensor:
        """Squared distances (up to rounding, may dip below 0) from sample points ``index`` (M,) to all: (M, S)."""
        return torch.mm(left[index], right.T, out=gram[: len(index)])

    chosen = torch.empty(n_init, n_clusters, dtype=torch.int64, device=device)  # (I, K)
    chosen[:, 0] = torch.randint(size, (n_init,), generator=generator, device=device)
    closest = squared_to(chosen[:, 0]).clamp_min(0.0)  # (I, S)
    potential = closest.sum(dim=1)  # (I,)
    uniform = torch.ones(size, device=device)  # (S,)
    offsets = torch.arange(n_init, device=device) * trials  # (I,)
    for k in range(1, n_clusters):
        # A run whose points all coincide with its centres draws uniformly instead of from zeros.
        weights = closest if bool((potential > 0).all()) else torch.where(potential.unsqueeze(1) > 0, closest, uniform)
        candidates = torch.multinomial(weights, trials, replacement=True, generator=generator)  # (I, T)
        trial = squared_to(candidates.reshape(-1))  # (I * T, S)
        torch.minimum(trial.view(n_init, trials, size), closest.unsqueeze(1), out=trial.view(n_init, trials, size))
        trial_potential = trial.sum(dim=1).view(n_init, trials)  # (I, T)
        best = trial_potential.argmin(dim=1)  # (I,)
        chosen[:, k] = candidates.gather(1, best.unsqueeze(1)).squeeze(1)
        torch.index_select(trial, 0, offsets + best, out=closest).clamp_min_(0.0)
        potential = closest.sum(dim=1)
    return sample[chosen], potential  # (I, K, D), (I,)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order (N,) int64 in which :meth:`KMeans.fit` visits ``n`` rows in pass ``epoch``."""
    return torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))


def cluster_sums(labels: torch.Tensor, points: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Sum of the points (N, D) of every cluster -> (K, D), adding each cluster's points in row order.

    A sparse (K, N) one-hot matrix times the points: on CPU several times faster than
    ``index_add_``, and deterministic (no atomics).
    """
    n = points.shape[0]
    rows = torch.stack([labels, torch.arange(n, device=points.device)])  # (2, N)
    one_hot = torch.sparse_coo_tensor(rows, torch.ones(n, device=points.device), (n_clusters, n))  # (K, N)
    return torch.sparse.mm(one_hot, points)  # (K, D)


class KMeans:
    """Mini-batch k-means (see the module doc); ``centroids`` (K, D) float32 once fitted."""

    def __init__(self, config: KMeansConfig | None = None):
        self.config = config or KMeansConfig()
        self.centroids: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        #: Mini-batch steps and passes done, and why the last fit stopped.
        self.n_steps = 0
        self.n_epochs = 0
        self.stop_reason = ""
        #: Smoothed (EWA) mean batch inertia after every step, for plots and tests.
        self.history: list[float] = []
        #: Wall-clock seconds of the last fit: k-means++ ("init") and mini-batch updates ("steps").
        self.timings: dict[str, float] = {}

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    @property
    def n_clusters(self) -> int:
        return self.config.n_clusters

    # ----------------------------------------------------------------------------- fitting
    def fit(self, x: torch.Tensor, *, shuffle: bool = True) -> KMeans:
        """Fit on ``x`` (N, D) in memory: exactly :meth:`fit_stream` over its rows.

        Every pass visits the rows in a new random order, :func:`epoch_order` ``(N, seed, epoch)``
        (as scikit-learn draws random mini-batches); ``shuffle=False`` keeps the order of ``x``.
        """
        x = _as_points(x, x.device if isinstance(x, torch.Tensor) else torch.device("cpu"))
        step, seed = self.config.batch_size, self.config.seed

        def passes(epoch: int) -> Iterator[torch.Tensor]:
            if not shuffle:
                yield from (x[i : i + step] for i in range(0, len(x), step))
                return
            order = epoch_order(len(x), seed, epoch).to(x.device)  # (N,)
            yield from (x[order[i : i + step]] for i in range(0, len(x), step))

        return self.fit_stream(passes, n_samples=len(x))

    def fit_stream(self, batches: Batches, *, n_samples: int | None = None) -> KMeans:
        """Fit on a stream of point batches (N_i, D), any sizes, in bounded memory.

        ``batches`` is either a callable ``epoch -> iterable`` (a fresh pass per epoch, e.g.
        re-reading features with that epoch's shuffle), or a re-iterable such as a list. A
        one-shot iterator (a generator) allows a single pass only. ``n_samples``, the number
        of points per pass if known, sets the smoothing of the early-stopping average as
        scikit-learn does (2 batch_size / (n + 1)); unknown, the points seen so far stand in
        for it during the first pass.
        """
        config = self.config
        generator = torch.Generator(self.device).manual_seed(config.seed)
        epochs = _EpochSource(batches)
        state = _Convergence(config, n_samples)
        self.n_steps, self.history, self.stop_reason, self.timings = 0, [], "max_iter", {}
        with torch.no_grad(), matmul_precision(config.matmul_precision):
            first = iter(epochs(0))
            sample, replay = _take(first, config.sample_size, self.device)
            if sample.shape[0] < config.n_clusters:
                raise DataError(f"k-means needs at least n_clusters={config.n_clusters} points, got {len(sample)}")
            started = time.perf_counter()
            self._initialise(sample, generator, state)
            self.timings["init"] = time.perf_counter() - started
            started = time.perf_counter()
            for epoch in range(config.max_iter):
                stream = _chain(replay, first) if epoch == 0 else epochs(epoch)
                stopped = self._epoch(stream, generator, state)
                self.n_epochs = epoch + 1
                if stopped:
                    break
                state.end_epoch()
                if epochs.one_shot:
                    if config.max_iter > 1:
                        logger.warning("k-means got a one-shot iterator: stopping after one pass (pass a callable)")
                    self.stop_reason = "single pass"
                    break
            self.timings["steps"] = time.perf_counter() - started
        return self

    def _initialise(self, sample: torch.Tensor, generator: torch.Generator, state: _Convergence) -> None:
        config = self.config
        centres, potential = kmeans_plusplus(
            sample, config.n_clusters, n_init=config.n_init, trials=config.trials, generator=generator
        )
        best = int(potential.argmin())
        logger.info(
            "k-means++: %d run(s) on %d points, best potential %.6g", config.n_init, len(sample), potential[best]
        )
        self.centroids = centres[best].clone()  # (K, D)
        self.counts = torch.zeros(config.n_clusters, dtype=torch.float64, device=self.device)  # (K,)
        self._workspace = Workspace(self.device)
        state.set_scale(sample)

    def _epoch(self, stream: Iterable[torch.Tensor], generator: torch.Generator, state: _Convergence) -> bool:
        """One pass of mini-batch updates; True when a stopping rule fired."""
        config = self.config
        for batch in _minibatches(stream, config.batch_size, config.shuffle_batches, generator, self.device):
            if self._step(batch, generator, state):
                return True
        return False

    def _step(self, batch: torch.Tensor, generator: torch.Generator, state: _Convergence) -> bool:
        """One mini-batch update; True when a stopping rule fired."""
        centroids, counts, workspace = self.centroids, self.counts, self._workspace
        labels, distances = nearest(batch, centroids, workspace=workspace)  # (B,), (B,)
        batch_counts = torch.bincount(labels, minlength=self.n_clusters).to(torch.float64)  # (K,)
        sums = cluster_sums(labels, batch, self.n_clusters)  # (K, D)
        new_counts = counts + batch_counts
        # c <- c * n_old / n_new + sum / n_new for clusters with points; untouched (x 1 + 0) otherwise.
        hit = batch_counts > 0
        safe = new_counts.clamp_min(1.0)
        keep = torch.where(hit, counts / safe, 1.0).to(torch.float32).unsqueeze(1)  # (K, 1)
        rate = torch.where(hit, 1.0 / safe, 0.0).to(torch.float32).unsqueeze(1)  # (K, 1)
        updated = torch.addcmul(sums.mul_(rate), centroids, keep)  # (K, D)
        change = float((updated - centroids).square().sum()) if self.config.tol > 0 else 0.0
        self.centroids, self.counts = updated, new_counts
        state.points_seen += batch.shape[0]
        if self.config.reassignment_ratio > 0 and state.due_for_reassignment(batch.shape[0], new_counts):
            self._reassign(batch, distances, generator)
        self.n_steps += 1
        stop = state.update(float(distances.sum()) / batch.shape[0], batch.shape[0], change)
        self.history.append(state.ewa)
        if stop:
            self.stop_reason = stop
        return bool(stop)

    def _reassign(self, batch: torch.Tensor, distances: torch.Tensor, generator: torch.Generator) -> None:
        """Move clusters with a count below ratio x the largest count to far points of ``batch``."""
        counts = self.counts
        low = counts < self.config.reassignment_ratio * counts.max()  # (K,)
        limit = batch.shape[0] // 2
        if int(low.sum()) > limit:  # never more than half the batch: keep the largest of them
            low[counts.argsort()[limit:]] = False
        moved = int(low.sum())
        if moved == 0:
            return
        weights = distances if float(distances.sum()) > 0 else torch.ones_like(distances)
        picks = torch.multinomial(weights, moved, replacement=False, generator=generator)  # (moved,)
        self.centroids[low] = batch[picks]
        # As scikit-learn: restart their counts at the smallest remaining count, not at zero,
        # so they are not moved again at once.
        counts[low] = counts[~low].min()

    # -------------------------------------------------------------------------- inference
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster index (N,) int64 of every row of ``x`` (N, D), on ``x``'s device."""
        return self.nearest(x)[0]

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels (N,), squared distances (N,))`` of ``x`` (N, D), computed in exact float32."""
        centroids = self._fitted()
        points = _as_points(x, self.device)
        with torch.no_grad(), matmul_precision("ieee"):
            labels, distances = nearest(points, centroids)
        return labels.to(x.device), distances.to(x.device)

    def inertia(self, x: torch.Tensor) -> float:
        """Sum of squared distances from every row of ``x`` (N, D) to its nearest centroid (float64 sum)."""
        return float(self.nearest(x)[1].double().sum())

    def _fitted(self) -> torch.Tensor:
        if self.centroids is None:
            raise RuntimeError("k-means is not fitted: call fit, fit_stream or load first")
        return self.centroids

    # ---------------------------------------------------------------------------- storage
    def save(self, path: str | Path) -> None:
        """Write centroids, counts, config and fit statistics to a safetensors file, atomically."""
        from safetensors.torch import save_file

        self._fitted()
        metadata = {
            "format": FORMAT,
            "config": json.dumps(asdict(self.config)),
            "stats": json.dumps({"n_steps": self.n_steps, "n_epochs": self.n_epochs, "stop_reason": self.stop_reason}),
        }
        tensors = {"centroids": self.centroids.contiguous().cpu(), "counts": self.counts.contiguous().cpu()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> KMeans:
        """Read a model written by :meth:`save`; ``device`` overrides the saved one."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except FileNotFoundError:
            raise DataError("k-means model not found", path) from None
        except (SafetensorError, OSError) as error:
            raise DataError(f"not a readable k-means model: {error}", path) from None
        if metadata.get("format") != FORMAT or "centroids" not in tensors:
            raise DataError(f"not an audiossl k-means model (format {metadata.get('format')!r})", path)
        config = from_dict(KMeansConfig, json.loads(metadata["config"]), source=path)
        if device is not None:
            config.device = device
        model = cls(config)
        model.centroids = tensors["centroids"].to(model.device, torch.float32)
        model.counts = tensors["counts"].to(model.device, torch.float64)
        stats = json.loads(metadata.get("stats", "{}"))
        model.n_steps, model.n_epochs = stats.get("n_steps", 0), stats.get("n_epochs", 0)
        model.stop_reason = stats.get("stop_reason", "")
        return model


class _Convergence:
    """scikit-learn's stopping rules: EWA of the mean batch inertia, and the tolerance on centroid moves."""

    def __init__(self, config: KMeansConfig, n_samples: int | None):
        self.config = config
        self.n_samples = n_samples
        self.points_seen = 0
        self.first_pass = True
        self.steps = 0
        self.ewa = math.nan
        self.ewa_min = math.inf
        self.no_improvement = 0
        self.tol = 0.0
        self.since_reassignment = 0

    def set_scale(self, sample: torch.Tensor) -> None:
        """The tolerance is relative to the mean feature variance (estimated on the init sample)."""
        self.tol = (
            self.config.tol * float(sample.double().var(dim=0, unbiased=False).mean()) if self.config.tol else 0.0
        )

    def end_epoch(self) -> None:
        if self.first_pass and self.n_samples is None:
            self.n_samples = self.points_seen
        self.first_pass = False

    def due_for_reassignment(self, batch_size: int, counts: torch.Tensor) -> bool:
        """scikit-learn's schedule: when a cluster is empty, or every 10 k points."""
        self.since_reassignment += batch_size
        if bool((counts == 0).any()) or self.since_reassignment >= 10 * self.config.n_clusters:
            self.since_reassignment = 0
            return True
        return False

    def update(self, batch_inertia: float, batch_size: int, change: float) -> str:
        """Record one step; the name of the rule that stops the fit, or ''."""
        self.steps += 1
        if self.steps == 1:  # as scikit-learn: the first batch measures the initial centres, not the fit
            return ""
        if self.steps == 2:
            self.ewa = batch_inertia
        else:
            n = self.n_samples if self.n_samples is not None else self.points_seen
            alpha = min(1.0, 2.0 * batch_size / (n + 1))
            self.ewa = self.ewa * (1.0 - alpha) + batch_inertia * alpha
        if self.tol > 0 and change <= self.tol:
            return "tol"
        if self.ewa < self.ewa_min:
            self.no_improvement, self.ewa_min = 0, self.ewa
        else:
            self.no_improvement += 1
        if self.config.max_no_improvement is not None and self.no_improvement >= self.config.max_no_improvement:
            return "no_improvement"
        return ""


class _EpochSource:
    """``epoch -> iterable of batches`` over whatever :meth:`KMeans.fit_stream` was given."""

    def __init__(self, batches: Batches):
        self.batches = batches
        self.one_shot = not callable(batches) and iter(batches) is batches

    def __call__(self, epoch: int) -> Iterable[torch.Tensor]:
        return self.batches(epoch) if callable(self.batches) else self.batches


def _as_points(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Check a batch of points (N, D) and bring it to float32 on ``device``."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"expected points of shape (N, D), got {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.float32)


def _take(stream: Iterator[torch.Tensor], count: int, device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The first ``count`` points of ``stream`` (fewer if it ends) and the batches read to get them."""
    read: list[torch.Tensor] = []
    total = 0
    while total < count:
        batch = next(stream, None)
        if batch is None:
            break
        batch = _as_points(batch, device)
        if read and batch.shape[1] != read[0].shape[1]:
            raise DataError(f"feature batches disagree on the dimension: {read[0].shape[1]} then {batch.shape[1]}")
        read.append(batch)
        total += batch.shape[0]
    if not read:
        raise DataError("k-means got no points")
    return torch.cat(read)[:count], read


def _chain(first: list[torch.Tensor], rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield from first
    yield from rest


def _minibatches(
    stream: Iterable[torch.Tensor], batch_size: int, buffer_batches: int, generator: torch.Generator, device
) -> Iterator[torch.Tensor]:
    """Re-cut ``stream`` into mini-batches of ``batch_size`` points (the last may be smaller).

    Points are gathered ``buffer_batches`` mini-batches at a time and, when that is more than
    one, permuted before cutting, so that neighbouring frames of one utterance are spread over
    several updates. The output depends only on the sequence of points, not on how the stream
    was cut. The mini-batches are views into two reused buffers: each is valid until the next
    one is requested.
    """
    capacity = batch_size * buffer_batches
    block = mixed = None
    held = 0
    for batch in stream:
        batch = _as_points(batch, device)
        if block is None:
            block = torch.empty(capacity, batch.shape[1], device=device)  # (capacity, D)
            mixed = torch.empty_like(block) if buffer_batches > 1 else block
        elif batch.shape[1] != block.shape[1]:
            raise DataError(f"feature batches disagree on the dimension: {block.shape[1]} then {batch.shape[1]}")
        start = 0
        while start < batch.shape[0]:
            take = min(capacity - held, batch.shape[0] - start)
            block[held : held + take] = batch[start : start + take]
            held, start = held + take, start + take
            if held == capacity:
                yield from _cut(block, mixed, batch_size, buffer_batches, generator)
                held = 0
    if held:
        yield from _cut(block[:held], mixed[:held], batch_size, buffer_batches, generator)


def _cut(
    block: torch.Tensor, mixed: torch.Tensor, batch_size: int, buffer_batches: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Permute ``block`` (n, D) into ``mixed`` (unless there is a single mini-batch per block) and cut it."""
    if buffer_batches > 1:
        order = torch.randperm(block.shape[0], generator=generator, device=generator.device).to(block.device)
        torch.index_select(block, 0, order, out=mixed)
        block = mixed
    for start in range(0, block.shape[0], batch_size):
        yield block[start : start + batch_size]
