"""Quality report: PNMI and purities against scikit-learn's contingency matrix and mutual information."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from audiossl.cluster.quality import QualityAccumulator, pnmi, purities, usage_entropy, write_report


def random_labelling(seed: int = 0, frames: int = 5000):
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 7, frames)
    # Clusters that partly follow the reference, so PNMI is neither 0 nor 1.
    clusters = np.where(
        rng.random(frames) < 0.6, reference * 3 + rng.integers(0, 3, frames), rng.integers(0, 25, frames)
    )
    return reference, clusters


def test_pnmi_and_purity_match_scikit_learn():
    reference, clusters = random_labelling()
    table = contingency_matrix(reference, clusters)  # (Y, Z)
    expected_pnmi = mutual_info_score(reference, clusters) / mutual_info_score(reference, reference)
    assert pnmi(table) == pytest.approx(expected_pnmi, rel=1e-10)
    label_purity, cluster_purity = purities(table)
    assert label_purity == pytest.approx(table.max(axis=0).sum() / len(reference))
    assert cluster_purity == pytest.approx(table.max(axis=1).sum() / len(reference))
    assert 0 < expected_pnmi < 1


def test_accumulator_over_batches_equals_whole():
    reference, clusters = random_labelling(seed=1)
    accumulator = QualityAccumulator(30, reference="utt2digit")
    distances = torch.rand(len(clusters), generator=torch.Generator().manual_seed(0))
    for start in range(0, len(clusters), 700):  # classes first seen in later batches grow the table
        part = slice(start, start + 700)
        accumulator.update(torch.from_numpy(clusters[part]), distances[part], [f"d{r}" for r in reference[part]])
    report = accumulator.report()
    table = contingency_matrix(reference, clusters)
    assert report.pnmi == pytest.approx(
        mutual_info_score(reference, clusters) / mutual_info_score(reference, reference)
    )
    assert report.label_purity == pytest.approx(table.max(axis=0).sum() / len(reference))
    assert report.counts == np.bincount(clusters, minlength=30).tolist()
    assert report.unused_clusters == 5  # clusters 25..29 never occur
    assert report.inertia == pytest.approx(float(distances.double().sum()))
    assert report.reference_classes == 7 and report.n_frames == len(clusters)


def test_usage_entropy_and_perplexity():
    assert usage_entropy(np.full(16, 10)) == pytest.approx(4.0)
    assert usage_entropy(np.array([5, 0, 0])) == 0.0
    accumulator = QualityAccumulator(8)
    accumulator.update(torch.arange(4).repeat(10))
    report = accumulator.report()
    assert report.usage_perplexity == pytest.approx(4.0) and report.unused_clusters == 4
    assert report.pnmi is None and report.reference is None
    assert math.isnan(pnmi(np.array([[3, 4, 5]])))  # a single reference class: undefined


def test_report_files(tmp_path):
    reference, clusters = random_labelling(seed=2, frames=300)
    accumulator = QualityAccumulator(25, reference="utt2spk")
    accumulator.update(torch.from_numpy(clusters), torch.ones(300), [str(r) for r in reference])
    paths = write_report(accumulator.report(steps=3), tmp_path)
    data = json.loads(paths[0].read_text())
    assert data["n_frames"] == 300 and data["reference"] == "utt2spk" and data["extra"] == {"steps": 3}
    assert data["mean_inertia"] == pytest.approx(1.0)
    text = paths[1].read_text()
    assert "PNMI" in text and "label purity" in text
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
