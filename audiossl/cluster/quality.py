"""How good a clustering is as a set of targets: usage, inertia, and agreement with a reference.

* **Usage**: frames per cluster, the number of unused clusters, and the entropy of the usage
  distribution (in bits) with its perplexity ``2^H`` (the "effective" number of clusters).
* **Inertia**: the sum of squared distances to the nearest centroid, and its mean per frame.
* **Agreement with a reference labelling** y (phones, or an utterance label such as the
  FSDD digit or speaker broadcast to every frame), over the joint distribution p(y, z) of
  reference and cluster z, with the measures of the HuBERT paper (Hsu et al. 2021, sec. IV-E):
  PNMI ``I(y; z) / H(y)``, the fraction of reference uncertainty the clusters remove;
  *label purity* ``E_z[max_y p(y | z)]`` (the paper's "phone purity": how pure each cluster
  is); *cluster purity* ``E_y[max_z p(z | y)]`` (how concentrated each reference class is).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from audiossl.fileio import atomic_path, atomic_write


@dataclass
class QualityReport:
    """A clustering's quality; reference measures are None without a reference labelling."""

    n_clusters: int
    n_frames: int
    inertia: float
    """Sum over frames of the squared distance to the nearest centroid."""
    counts: list[int]
    """Frames per cluster."""
    unused_clusters: int
    usage_entropy: float
    """Entropy of the cluster usage distribution, in bits."""
    usage_perplexity: float
    """``2 ** usage_entropy``: n_clusters when usage is uniform."""
    reference: str | None = None
    """Name of the reference labelling (e.g. utt2digit)."""
    reference_classes: int | None = None
    pnmi: float | None = None
    label_purity: float | None = None
    cluster_purity: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def mean_inertia(self) -> float:
        return self.inertia / self.n_frames if self.n_frames else math.nan

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["mean_inertia"] = self.mean_inertia
        return {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in data.items()}

    def to_text(self) -> str:
        """A short aligned table for terminals and logs."""
        rows = [
            ("clusters", f"{self.n_clusters} ({self.unused_clusters} unused)"),
            ("frames", f"{self.n_frames}"),
            ("inertia / frame", f"{self.mean_inertia:.6g}"),
            ("usage entropy", f"{self.usage_entropy:.3f} bits (perplexity {self.usage_perplexity:.1f})"),
        ]
        if self.reference is not None:
            rows += [
                ("reference", f"{self.reference} ({self.reference_classes} classes)"),
                ("PNMI", _fmt(self.pnmi)),
                ("label purity", _fmt(self.label_purity)),
                ("cluster purity", _fmt(self.cluster_purity)),
            ]
        rows += [(key, str(value)) for key, value in self.extra.items()]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def pnmi(joint: np.ndarray) -> float:
    """Phone-normalised mutual information ``I(y; z) / H(y)`` of a contingency table (Y, Z) of counts.

    NaN when the reference has a single class (H(y) = 0).
    """
    p = np.asarray(joint, dtype=np.float64)
    p = p / p.sum()
    py, pz = p.sum(axis=1), p.sum(axis=0)
    nonzero = p > 0
    outer = np.outer(py, pz)
    mutual = float(np.sum(p[nonzero] * np.log(p[nonzero] / outer[nonzero])))
    entropy = float(-np.sum(py[py > 0] * np.log(py[py > 0])))
    return mutual / entropy if entropy > 0 else math.nan


def purities(joint: np.ndarray) -> tuple[float, float]:
    """``(label purity E_z[max_y p(y|z)], cluster purity E_y[max_z p(z|y)])`` of a table (Y, Z) of counts."""
    p = np.asarray(joint, dtype=np.float64)
    p = p / p.sum()
    return float(p.max(axis=0).sum()), float(p.max(axis=1).sum())


def usage_entropy(counts: np.ndarray) -> float:
    """Entropy in bits of the distribution ``counts / counts.sum()``."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-np.sum(p * np.log2(p))) if p.size else 0.0


class QualityAccumulator:
    """Collects usage, inertia and the reference/cluster table batch by batch, in O(K + Y K) memory."""

    def __init__(self, n_clusters: int, reference: str | None = None):
        self.n_clusters = n_clusters
        self.reference = reference
        self.counts = np.zeros(n_clusters, dtype=np.int64)
        self.inertia = 0.0
        self.classes: dict[str, int] = {}
        self.joint = np.zeros((0, n_clusters), dtype=np.int64)  # (Y, K)

    def update(
        self,
        clusters: torch.Tensor,
        distances: torch.Tensor | None = None,
        reference: Sequence[str] | None = None,
    ) -> None:
        """Add frames: cluster ids (N,), their squared distances (N,), and reference labels (N strings)."""
        ids = clusters.detach().cpu().numpy().astype(np.int64)
        self.counts += np.bincount(ids, minlength=self.n_clusters)
        if distances is not None:
            self.inertia += float(distances.detach().double().sum())
        if reference is None:
            return
        if len(reference) != len(ids):
            raise ValueError(f"{len(reference)} reference labels for {len(ids)} frames")
        classes = np.fromiter((self.classes.setdefault(label, len(self.classes)) for label in reference), np.int64)
        if len(self.classes) > self.joint.shape[0]:
            grown = np.zeros((len(self.classes), self.n_clusters), dtype=np.int64)
            grown[: self.joint.shape[0]] = self.joint
            self.joint = grown
        flat = np.bincount(classes * self.n_clusters + ids, minlength=self.joint.size)
        self.joint += flat.reshape(self.joint.shape)

    def report(self, **extra: object) -> QualityReport:
        entropy = usage_entropy(self.counts)
        report = QualityReport(
            n_clusters=self.n_clusters,
            n_frames=int(self.counts.sum()),
            inertia=self.inertia,
            counts=self.counts.tolist(),
            unused_clusters=int((self.counts == 0).sum()),
            usage_entropy=entropy,
            usage_perplexity=2.0**entropy,
            extra=dict(extra),
        )
        if self.reference is not None and self.joint.sum() > 0:
            report.reference = self.reference
            report.reference_classes = len(self.classes)
            report.pnmi = pnmi(self.joint)
            report.label_purity, report.cluster_purity = purities(self.joint)
        return report


def write_report(report: QualityReport, out_dir: str | Path, name: str = "quality") -> list[Path]:
    """Write ``<name>.json``, ``<name>.txt`` and the usage histogram ``<name>_usage.png``, atomically."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.txt", out_dir / f"{name}_usage.png"]
    with atomic_write(paths[0]) as handle:
        json.dump(report.to_dict(), handle, indent=1)
        handle.write("\n")
    with atomic_write(paths[1]) as handle:
        handle.write(report.to_text())
    plot_usage(report, paths[2])
    return paths


def plot_usage(report: QualityReport, path: str | Path) -> None:
    """Bar chart of frames per cluster, most used first (PNG, matplotlib's Agg backend)."""
    from matplotlib.figure import Figure

    counts = np.sort(np.asarray(report.counts))[::-1]
    figure = Figure(figsize=(8, 3.2), dpi=100)
    axes = figure.add_subplot()
    axes.bar(np.arange(len(counts)), counts, width=1.0, color="#3a6ea5")
    axes.set_xlabel("cluster (sorted by usage)")
    axes.set_ylabel("frames")
    axes.set_xlim(-0.5, len(counts) - 0.5)
    axes.set_title(
        f"{report.n_clusters} clusters, {report.unused_clusters} unused, perplexity {report.usage_perplexity:.1f}"
    )
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
