"""``audiossl kmeans fit`` and ``label`` on a tiny synthetic data dir; user errors exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from audiossl.cli.main import main
from audiossl.cluster.labels import read_labels
from audiossl.data.kaldi import DataDir
from audiossl.data.synth import SynthConfig, synthesize_corpus

FAST = ["--set", "kmeans.n_init=2", "--set", "kmeans.batch_size=200", "--set", "kmeans.max_iter=3"]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=2))
    return out


def test_fit_then_label(synth_dir, tmp_path, capsys):
    model_dir, label_dir = tmp_path / "km", tmp_path / "labels"
    args = ["kmeans", "fit", "--data", str(synth_dir), "--out", str(model_dir), "--n-clusters", "8", "--device", "cpu"]
    assert main(args + FAST) == 0
    for name in ("kmeans.safetensors", "config.yaml", "quality.json", "quality.txt", "quality_usage.png"):
        assert (model_dir / name).is_file(), name
    fit_report = json.loads((model_dir / "quality.json").read_text())
    assert fit_report["n_clusters"] == 8 and fit_report["extra"]["frame_rate"] == 100.0
    args = ["kmeans", "label", "--model", str(model_dir), "--data", str(synth_dir), "--out", str(label_dir)]
    assert main(args + ["--ref-label", "utt2spk"]) == 0
    labels, rate = read_labels(label_dir)
    assert rate == 100.0
    assert set(labels) == set(DataDir.load(synth_dir).utterance_ids)
    report = json.loads((label_dir / "quality.json").read_text())
    assert report["reference"] == "utt2spk" and report["pnmi"] is not None
    assert report["n_frames"] == fit_report["n_frames"] == sum(len(v) for v in labels.values())
    assert all(int(v.max()) < 8 for v in labels.values())
    assert "PNMI" in capsys.readouterr().out


def test_fit_from_a_dump_equals_fit_from_audio(synth_dir, tmp_path):
    common = ["kmeans", "fit", "--data", str(synth_dir), "--n-clusters", "5", "--set", "kmeans.shuffle_batches=1"]
    fast = ["--set", "kmeans.n_init=2", "--set", "kmeans.batch_size=100000", "--set", "kmeans.max_iter=2"]
    assert main(common + fast + ["--out", str(tmp_path / "a")]) == 0
    assert main(common + fast + ["--out", str(tmp_path / "b"), "--dump-dir", str(tmp_path / "dump")]) == 0
    assert (tmp_path / "dump" / "index.json").is_file()
    from audiossl.cluster.kmeans import KMeans

    # Four short utterances make one feature batch (one shard, in stream order) and one mini-batch per
    # pass holds every frame, so the dump and the audio stream feed k-means the same points.
    a = KMeans.load(tmp_path / "a" / "kmeans.safetensors")
    b = KMeans.load(tmp_path / "b" / "kmeans.safetensors")
    torch.testing.assert_close(a.centroids, b.centroids, rtol=1e-5, atol=1e-3)


def test_user_errors_exit_2(synth_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["kmeans", "fit", "--data", str(missing), "--out", str(tmp_path / "km")] + FAST) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["kmeans", "label", "--model", str(missing), "--data", str(synth_dir), "--out", str(tmp_path)]) == 2
    assert "not a k-means dir" in capsys.readouterr().err
    args = ["kmeans", "fit", "--data", str(synth_dir), "--out", str(tmp_path / "km"), "--sample-fraction", "0"]
    assert main(args) == 2
    assert (
        main(["kmeans", "fit", "--data", str(synth_dir), "--out", str(tmp_path / "km"), "--set", "kmeans.nope=1"]) == 2
    )


@pytest.mark.parametrize("command", ["fit", "label"])
def test_help(command, capsys):
    assert main(["kmeans", command, "--help"]) == 0
    assert "--out" in capsys.readouterr().out


def test_feature_cache_replays_the_first_pass_within_budget():
    from audiossl.cluster.pipeline import FeatureCache

    batches = [torch.full((3, 2), float(i)) for i in range(5)]
    calls = []

    def produce(epoch):
        calls.append(epoch)
        return iter(batches)

    cache = FeatureCache(produce, budget_gb=1.0, seed=0)
    passes = [torch.cat(list(cache(epoch))) for epoch in range(3)]
    assert calls == [0]  # later passes come from memory
    assert all(torch.equal(p.sort(dim=0).values, passes[0].sort(dim=0).values) for p in passes)
    assert not torch.equal(passes[1], passes[2])  # replayed in a new order every epoch
    calls.clear()
    small = FeatureCache(produce, budget_gb=40 / 2**30, seed=0)  # 40 bytes: less than the data
    for epoch in range(3):
        assert len(list(small(epoch))) == 5
    assert calls == [0, 1, 2] and small.cached is None
