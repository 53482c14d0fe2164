"""kmeans label: --nj 2 and --shard I/N + merge-labels write exactly the one-process label store and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.cli.main import main
from audiossl.cluster.pipeline import feature_source, load_kmeans_dir
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.labelstore import LabelStore

FAST = ["--set", "kmeans.n_init=2", "--set", "kmeans.batch_size=200", "--set", "kmeans.max_iter=3"]
STORE = ["labels.npy", "offsets.npy", "ids", "id_offsets.npy", "info.json", "frame_rate", "quality.json"]


@pytest.fixture(scope="module")
def kmeans_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("km") / "km"
    args = ["kmeans", "fit", "--data", str(corpus), "--out", str(out), "--n-clusters", "12", "--device", "cpu"]
    assert main(args + FAST) == 0
    return out


def _label(kmeans_dir: Path, corpus: Path, out: Path, *extra: str) -> None:
    args = ["kmeans", "label", "--model", str(kmeans_dir), "--data", str(corpus), "--out", str(out)]
    assert main([*args, "--ref-label", "utt2spk", "--chunk-size", "4", *extra]) == 0


def test_jobs_and_shards_write_the_same_bytes(kmeans_dir: Path, corpus: Path, tmp_path: Path) -> None:
    one, jobs, sharded = tmp_path / "one", tmp_path / "jobs", tmp_path / "sharded"
    _label(kmeans_dir, corpus, one)
    _label(kmeans_dir, corpus, jobs, "--nj", "2")
    for index in (1, 0):
        _label(kmeans_dir, corpus, sharded, "--shard", f"{index}/2")
    assert sorted(p.name for p in sharded.iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    assert main(["kmeans", "merge-labels", str(sharded), "--ark"]) == 0
    for name in STORE:
        assert (jobs / name).read_bytes() == (one / name).read_bytes(), name
        assert (sharded / name).read_bytes() == (one / name).read_bytes(), name
    assert not list(sharded.glob("shard-*"))
    report = json.loads((one / "quality.json").read_text())
    assert report["reference"] == "utt2spk" and report["n_frames"] == LabelStore(one).info["frames"]
    import kaldiio

    ark = kaldiio.load_scp(str(sharded / "labels.scp"))
    store = LabelStore(one)
    assert sorted(ark) == sorted(store) and all(np.array_equal(ark[u], store.array(u)) for u in store)


def test_labels_are_the_nearest_centroid_of_each_utterance_alone(kmeans_dir: Path, corpus: Path, tmp_path: Path):
    out = tmp_path / "labels"
    _label(kmeans_dir, corpus, out)
    kmeans, config = load_kmeans_dir(kmeans_dir, "cpu")
    source, config = feature_source(config)
    centroids = kmeans.centroids.double()  # (K, D)
    dataset = AudioDataset(corpus, sample_rate=config.sample_rate)
    store = LabelStore(out)
    assert len(store) == len(dataset) == 11
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        with torch.no_grad():
            features, lengths = source.eval()(batch.waveforms, batch.lengths)
        points = features[0, : int(lengths[0])].double()  # (F, D), alone: no padding, no batch
        distances = torch.cdist(points, centroids).square()  # (F, K) in float64
        labels = torch.from_numpy(store.array(batch.ids[0]).astype(np.int64))
        assert len(labels) == len(points)
        chosen = distances.gather(1, labels[:, None])[:, 0]
        best = distances.min(1).values
        # the store's label is the nearest centroid, up to float32 rounding of near ties
        assert torch.all(chosen - best <= 1e-4 * (1 + best)), batch.ids[0]


def test_merge_refuses_an_incomplete_set(kmeans_dir: Path, corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "partial"
    _label(kmeans_dir, corpus, out, "--shard", "1/2")
    capsys.readouterr()
    assert main(["kmeans", "merge-labels", str(out)]) == 2
    assert "shard(s) 0/2 missing" in capsys.readouterr().err
    assert (
        main(
            ["kmeans", "label", "--model", str(kmeans_dir), "--data", str(corpus), "--out", str(out), "--shard", "a/b"]
        )
        == 2
    )
