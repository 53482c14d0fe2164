"""Mini-batch k-means: recovery, streaming = in-memory, determinism, exact assignment, parity with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from audiossl.cluster import kmeans as kmeans_module
from audiossl.cluster.kmeans import KMeans, KMeansConfig, epoch_order, kmeans_plusplus, matmul_precision
from audiossl.errors import ConfigError, DataError


def blobs(n: int = 3000, centers: int = 6, dim: int = 8, std: float = 0.3, seed: int = 0):
    x, y = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=std, random_state=seed)
    return torch.tensor(x, dtype=torch.float32), y


def small_config(**overrides) -> KMeansConfig:
    options = {"n_clusters": 6, "batch_size": 256, "max_iter": 10, "n_init": 3, "seed": 0}
    options.update(overrides)
    return KMeansConfig(**options)


def test_recovers_well_separated_blobs():
    x, truth = blobs()
    model = KMeans(small_config()).fit(x)
    assert adjusted_rand_score(truth, model.predict(x).numpy()) == 1.0


def test_streamed_fit_equals_in_memory_fit():
    x, _ = blobs(n=2500, centers=5)
    # Exercise every code path that draws random numbers: shuffle buffer, reassignment.
    config = small_config(n_clusters=7, batch_size=200, shuffle_batches=3, reassignment_ratio=0.05, max_iter=6)
    in_memory = KMeans(config).fit(x)  # visits the rows in epoch_order(N, seed, epoch)
    sizes = [1, 17, 400, 3, 999]  # irregular cuts, different in every epoch

    def cuts(epoch: int):
        shuffled = x[epoch_order(len(x), config.seed, epoch)]
        start, turn = 0, epoch
        while start < len(x):
            size = sizes[turn % len(sizes)]
            yield shuffled[start : start + size].clone()
            start, turn = start + size, turn + 1

    streamed = KMeans(config).fit_stream(cuts, n_samples=len(x))
    assert in_memory.n_steps == streamed.n_steps > 0
    torch.testing.assert_close(streamed.centroids, in_memory.centroids, rtol=0, atol=1e-6)
    torch.testing.assert_close(streamed.counts, in_memory.counts, rtol=0, atol=0)
    # Without shuffling, a list of chunks in the rows' order is the same stream; a list is re-iterable.
    ordered = KMeans(config).fit(x, shuffle=False)
    listed = KMeans(config).fit_stream(list(x.split(333)), n_samples=len(x))
    torch.testing.assert_close(listed.centroids, ordered.centroids, rtol=0, atol=1e-6)


def test_deterministic_for_a_seed_and_different_across_seeds():
    x, _ = blobs(n=2000, centers=12, std=1.5)
    config = small_config(n_clusters=12, n_init=2)
    first, second = KMeans(config).fit(x), KMeans(config).fit(x)
    assert torch.equal(first.centroids, second.centroids)
    other = KMeans(small_config(n_clusters=12, n_init=2, seed=1)).fit(x)
    assert not torch.equal(first.centroids, other.centroids)


def test_predict_and_inertia_equal_brute_force(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 12, generator=generator) * 3 + 5
    model = KMeans(small_config(n_clusters=9)).fit(x)
    # Brute force in float64, one point at a time.
    centroids = model.centroids.double()
    expected = torch.tensor([int(((centroids - row.double()) ** 2).sum(dim=1).argmin()) for row in x])
    expected_inertia = sum(
        float(((centroids[k] - row.double()) ** 2).sum()) for k, row in zip(expected, x, strict=True)
    )
    assert torch.equal(model.predict(x), expected)
    assert model.inertia(x) == pytest.approx(expected_inertia, rel=1e-5)
    monkeypatch.setattr(kmeans_module, "CHUNK_ELEMENTS", 9 * 7)  # chunks of 7 rows
    assert torch.equal(model.predict(x), expected)


def test_inertia_close_to_scikit_learn_kmeans():
    # 20 overlapping blobs: full-batch Lloyd (scikit-learn KMeans) as the reference optimum.
    x, _ = make_blobs(n_samples=6000, centers=20, n_features=16, cluster_std=2.0, random_state=3, center_box=(-20, 20))
    x = x.astype(np.float32)
    reference = SklearnKMeans(n_clusters=20, n_init=3, random_state=0).fit(x)
    ours = KMeans(KMeansConfig(n_clusters=20, batch_size=1000, max_iter=50, n_init=3, seed=0)).fit(torch.from_numpy(x))
    assert ours.inertia(torch.from_numpy(x)) / reference.inertia_ < 1.01


def test_inertia_no_worse_than_scikit_learn_minibatch_on_unimodal_data():
    # A single Gaussian has no true clusters: mini-batch k-means ends a few % above Lloyd;
    # ours must do at least as well as scikit-learn's MiniBatchKMeans with the same settings.
    x = np.random.default_rng(0).standard_normal((6000, 8)).astype(np.float32)
    settings = {"n_clusters": 20, "batch_size": 1000, "max_iter": 50, "n_init": 3}
    theirs = [
        MiniBatchKMeans(**settings, random_state=seed, reassignment_ratio=0.0, tol=0.0).fit(x).inertia_
        for seed in range(3)
    ]
    points = torch.from_numpy(x)
    ours = [KMeans(KMeansConfig(**settings, seed=seed)).fit(points).inertia(points) for seed in range(3)]
    assert np.median(ours) <= 1.01 * np.median(theirs)


def test_kmeans_plusplus_potential_and_centres():
    x, _ = blobs(n=600, centers=4, dim=5, std=1.0)
    generator = torch.Generator().manual_seed(0)
    centres, potential = kmeans_plusplus(x, 6, n_init=3, trials=4, generator=generator)
    assert centres.shape == (3, 6, 5)
    for run in range(3):
        # Every centre is a sample point, all distinct, and the potential is the sample's inertia.
        assert all(bool((x == centre).all(dim=1).any()) for centre in centres[run])
        assert len({tuple(c.tolist()) for c in centres[run]}) == 6
        brute = torch.cdist(x.double(), centres[run].double()).min(dim=1).values.square().sum()
        assert float(potential[run]) == pytest.approx(float(brute), rel=1e-4)
    assert not torch.equal(centres[0], centres[1])


def test_dead_cluster_moves_only_with_reassignment():
    x, _ = blobs(n=3000, centers=4, dim=4, std=0.5)
    outlier = torch.full((1, 4), 500.0)
    data = torch.cat([outlier, x])  # first in the k-means++ sample: it is sure to get a centre
    kept = KMeans(small_config(n_clusters=5, reassignment_ratio=0.0)).fit(data, shuffle=False)
    moved = KMeans(small_config(n_clusters=5, reassignment_ratio=0.05)).fit(data, shuffle=False)
    distance_kept = float((kept.centroids - outlier).norm(dim=1).min())
    distance_moved = float((moved.centroids - outlier).norm(dim=1).min())
    assert distance_kept < 1e-3
    assert distance_moved > 100


def test_save_and_load_round_trip(tmp_path):
    x, _ = blobs(n=800)
    model = KMeans(small_config()).fit(x)
    model.save(tmp_path / "km.safetensors")
    loaded = KMeans.load(tmp_path / "km.safetensors")
    assert loaded.config == model.config
    assert torch.equal(loaded.centroids, model.centroids)
    assert torch.equal(loaded.predict(x), model.predict(x))
    assert (loaded.n_steps, loaded.stop_reason) == (model.n_steps, model.stop_reason)
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    with pytest.raises(DataError, match="bad.safetensors"):
        KMeans.load(tmp_path / "bad.safetensors")
    with pytest.raises(DataError, match="not found"):
        KMeans.load(tmp_path / "missing.safetensors")


def test_stream_errors_and_single_pass():
    x, _ = blobs(n=500)
    with pytest.raises(DataError, match="at least n_clusters"):
        KMeans(small_config(n_clusters=10)).fit(x[:5])
    with pytest.raises(DataError, match="dimension"):
        KMeans(small_config()).fit_stream([x[:300], torch.zeros(300, 3)])
    with pytest.raises(DataError, match="no points"):
        KMeans(small_config()).fit_stream([])
    one_shot = KMeans(small_config(max_iter=5)).fit_stream(iter(x.split(100)))
    assert one_shot.n_epochs == 1 and one_shot.stop_reason == "single pass"


def test_config_validation_and_precision_restored():
    with pytest.raises(ConfigError):
        KMeansConfig(n_clusters=0)
    with pytest.raises(ConfigError):
        KMeansConfig(n_clusters=10, init_size=5)
    before = torch.backends.mkldnn.matmul.fp32_precision
    with matmul_precision("bf16"):
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    assert torch.backends.mkldnn.matmul.fp32_precision == before
