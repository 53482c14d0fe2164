"""A closed-form reference probe for utterance classification: standardised logistic regression.

A trained head can under-train (too few steps, a poor learning rate); a convex probe solved to
convergence cannot, so it tells a user whether a low score is the features' fault or the
head's. Following the linear-evaluation protocol of self-supervised learning papers (and
scikit-learn's own recipe), :func:`fit_probe` mean-pools every layer the upstream's layer mix
reads (over valid frames) into one vector per utterance and layer, standardises it
(``StandardScaler``) and fits a multinomial ``LogisticRegression`` for every layer and every
inverse regularisation strength ``C`` of a small log grid; the (layer, C) with the best dev
accuracy (ties: the smaller C, then the lower layer) is kept. Without dev data it takes the
last layer and C = 1. The probe is stored as arrays (no pickle) and predicts with numpy
exactly as scikit-learn's ``predict`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.progress import progress

logger = logging.getLogger(__name__)

#: Inverse regularisation strengths tried (scikit-learn's ``C``), a log grid as in linear-probe protocols.
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def pool_layers(layers: Sequence[torch.Tensor], lengths: torch.Tensor) -> np.ndarray:
    """Mean over the valid frames of every layer: L x (B, S, D) with lengths (B,) -> (B, L, D) float64 numpy."""
    stacked = torch.stack(list(layers)).double()  # (L, B, S, D)
    steps = torch.arange(stacked.shape[2], device=stacked.device)
    valid = (steps[None, :] < lengths.to(stacked.device)[:, None]).to(stacked.dtype)  # (B, S)
    pooled = (stacked * valid[None, :, :, None]).sum(dim=2) / valid.sum(dim=1).clamp_min(1.0)[None, :, None]
    return pooled.permute(1, 0, 2).cpu().numpy()


@torch.no_grad()
def pooled_layers(
    upstream: Any, data_dir: str | Path, label: str, *, batch_seconds: float = 60.0
) -> tuple[list[str], np.ndarray, list[str]]:
    """(ids, features (N, L, D) float64, labels) of ``data_dir``: every layer mean-pooled over valid frames.

    ``upstream`` is an :class:`~audiossl.downstream.upstream.Upstream` (its :meth:`layers`); the
    utterances are whole (no crops) and come back in the data dir's order. When the upstream
    carries the trainer's ``feature_cache`` holding every utterance, the pooled features come from
    it (the same frames, without running the encoder again).
    """
    dataset = AudioDataset(data_dir, sample_rate=upstream.sample_rate, labels=[label])
    labels = [dataset.label_tables[label][utt] for utt in dataset.ids]
    cache = getattr(upstream, "feature_cache", None)  # the trainer's cache of these utterances' layers, if any
    if cache is not None and all(utt in cache.items for utt in dataset.ids):
        features = np.stack([cache.items[utt].double().mean(dim=1).numpy() for utt in dataset.ids])  # (N, L, D)
        return list(dataset.ids), features, labels
    sampler = BucketBatchSampler(dataset.durations, batch_seconds, num_buckets=1, shuffle=False)
    rows: dict[int, np.ndarray] = {}
    upstream.eval()
    for indices in progress(list(sampler), desc="pooled features", unit="batch"):
        batch = collate(dataset[indices])
        layers, lengths = upstream.layers(batch.waveforms, batch.lengths)  # L x (B, S, D), (B,)
        pooled = pool_layers(layers, lengths)  # (B, L, D)
        for position, index in enumerate(indices):
            rows[index] = pooled[position]
    features = np.stack([rows[i] for i in range(len(dataset))])  # (N, L, D)
    return list(dataset.ids), features, labels


@dataclass
class ProbeFit:
    """A fitted probe: chosen layer and C, scaler and logistic-regression arrays, and the dev scores of the grid."""

    layer: int
    C: float
    mean: np.ndarray  # (D,) StandardScaler mean_
    scale: np.ndarray  # (D,) StandardScaler scale_
    coef: np.ndarray  # (K', D) LogisticRegression coef_ (K' = 1 for two classes)
    intercept: np.ndarray  # (K',)
    classes: np.ndarray  # (K,) class indices the regression saw (classes_)
    dev_accuracy: float | None
    grid: list[dict[str, float]] = field(default_factory=list)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class indices (N,) of features (N, L, D), as scikit-learn's ``predict`` gives them."""
        x = (features[:, self.layer] - self.mean) / self.scale
        scores = x @ self.coef.T + self.intercept  # (N, K')
        if scores.shape[1] == 1:
            return self.classes[(scores[:, 0] > 0).astype(np.int64)]
        return self.classes[scores.argmax(axis=1)]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as numpy arrays (for ``np.savez``)."""
        return {
            "layer": np.asarray(self.layer),
            "C": np.asarray(self.C),
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "classes": self.classes,
            "dev_accuracy": np.asarray(np.nan if self.dev_accuracy is None else self.dev_accuracy),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> ProbeFit:
        """Inverse of :meth:`to_arrays` (reads an ``np.load`` result)."""
        dev = float(arrays["dev_accuracy"])
        return cls(
            layer=int(arrays["layer"]),
            C=float(arrays["C"]),
            mean=np.asarray(arrays["mean"]),
            scale=np.asarray(arrays["scale"]),
            coef=np.asarray(arrays["coef"]),
            intercept=np.asarray(arrays["intercept"]),
            classes=np.asarray(arrays["classes"]),
            dev_accuracy=None if np.isnan(dev) else dev,
        )


def make_pipeline(C: float, seed: int = 0) -> Any:
    """``StandardScaler`` + multinomial ``LogisticRegression(C)`` (lbfgs, run to convergence)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [("scale", StandardScaler()), ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed))]
    )


def fit_probe(
    train_x: np.ndarray,
    train_y: Sequence[int],
    dev_x: np.ndarray | None = None,
    dev_y: Sequence[int] | None = None,
    *,
    c_grid: Sequence[float] = C_GRID,
    layers: Sequence[int] | None = None,
    seed: int = 0,
) -> ProbeFit:
    """Fit on ``train_x`` (N, L, D); pick (layer, C) by accuracy on ``dev_x`` (last layer, C = 1 without dev)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    train_y = np.asarray(train_y)
    candidates = list(layers) if layers is not None else list(range(train_x.shape[1]))
    grid: list[dict[str, float]] = []
    if dev_x is None or dev_y is None or len(dev_y) == 0:
        choice, best_accuracy = (candidates[-1], 1.0), None
    else:
        dev_y = np.asarray(dev_y)
        best: tuple[float, float, int] | None = None
        choice = (candidates[-1], 1.0)
        for layer in candidates:
            for C in sorted(c_grid):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model = make_pipeline(C, seed).fit(train_x[:, layer], train_y)
                accuracy = float((model.predict(dev_x[:, layer]) == dev_y).mean())
                grid.append({"layer": layer, "C": C, "dev_accuracy": accuracy})
                key = (accuracy, -C, -layer)
                if best is None or key > best:
                    best, choice = key, (layer, C)
        best_accuracy = best[0] if best else None
    layer, C = choice
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = make_pipeline(C, seed).fit(train_x[:, layer], train_y)
    scaler, logreg = model.named_steps["scale"], model.named_steps["logreg"]
    logger.info("linear probe: layer %d, C %g (dev accuracy %s)", layer, C, best_accuracy)
    return ProbeFit(
        layer=layer,
        C=C,
        mean=scaler.mean_.copy(),
        scale=scaler.scale_.copy(),
        coef=logreg.coef_.copy(),
        intercept=logreg.intercept_.copy(),
        classes=logreg.classes_.copy(),
        dev_accuracy=best_accuracy,
        grid=grid,
    )


class ProbeHead(torch.nn.Module):
    """A fitted :class:`ProbeFit` as a head whose buffers travel in a downstream checkpoint (``--head linear-probe``).

    It reads mean-pooled layers (N, L, D), not the layer mix: the task's evaluation calls
    :meth:`predict` with :func:`pooled_layers`' features. Buffers take the shapes of the state
    dict they are loaded from (the fit decides them).
    """

    NAMES = ("layer", "C", "mean", "scale", "coef", "intercept", "classes", "dev_accuracy")

    def __init__(self, fit: ProbeFit | None = None):
        super().__init__()
        arrays = fit.to_arrays() if fit is not None else {name: np.zeros(0) for name in self.NAMES}
        for name in self.NAMES:
            self.register_buffer(name, torch.from_numpy(np.asarray(arrays[name])))

    def fit(self) -> ProbeFit:
        """The buffers as a :class:`ProbeFit`."""
        return ProbeFit.from_arrays({name: getattr(self, name).cpu().numpy() for name in self.NAMES})

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        for name in self.NAMES:
            setattr(self, name, state_dict[name].detach().clone())
        return torch.nn.modules.module._IncompatibleKeys([], [])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class indices (N,) of pooled features (N, L, D)."""
        return self.fit().predict(features)
