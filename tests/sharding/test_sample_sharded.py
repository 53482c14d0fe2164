"""k-means sample: the sharded sample is the unsharded one, file for file, and the fit on it is the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from audiossl.cli.main import main
from audiossl.cluster.features import FeatureDump, resolve_source
from audiossl.cluster.sample import SampleSettings, select_sample, utterance_key
from audiossl.data.dataset import AudioDataset, collate

FAST = ["--set", "kmeans.n_init=2", "--set", "kmeans.batch_size=200", "--set", "kmeans.max_iter=3"]
SAMPLE = ["--sample-fraction", "0.8", "--set", "sample_chunk=2", "--device", "cpu"]


def _settings(**changes) -> SampleSettings:
    base = dict(
        data_dirs=("d",),
        features="mfcc",
        feature_options="{}",
        sample_rate=16000,
        sample_fraction=1.0,
        max_hours=None,
        seed=0,
        batch_seconds=200.0,
        chunk_size=4,
    )
    return SampleSettings(**{**base, **changes})


def test_selection_is_hash_ordered_capped_and_split_free() -> None:
    ids = [[f"u{i:03d}" for i in range(200)]]
    durations = [[1.0 + (i % 7) for i in range(200)]]
    chosen = select_sample(ids, durations, _settings(sample_fraction=0.5, max_hours=0.05))
    keys = [utterance_key(0, 0, ids[0][i]) for _, i in chosen]
    assert keys == sorted(keys) and all(key < 0.5 for key in keys)
    # the cap: every utterance below the fraction is taken, in key order, until the next would pass 180 s
    below = sorted((utterance_key(0, 0, u), i) for i, u in enumerate(ids[0]) if utterance_key(0, 0, u) < 0.5)
    total, expected = 0.0, []
    for _, i in below:
        if total + durations[0][i] > 180.0:
            break
        total += durations[0][i]
        expected.append(i)
    assert [i for _, i in chosen] == expected and 0 < len(expected) < len(below)
    # a fraction near 0.5 keeps about half, and another seed draws another sample
    half = select_sample(ids, durations, _settings(sample_fraction=0.5))
    assert 70 < len(half) < 130
    assert half != select_sample(ids, durations, _settings(sample_fraction=0.5, seed=1))


def test_shards_and_jobs_write_the_same_dump_and_fit(corpus: Path, tmp_path: Path) -> None:
    one, jobs, sharded = tmp_path / "one", tmp_path / "jobs", tmp_path / "sharded"
    base = ["kmeans", "sample", "--data", str(corpus), *SAMPLE, "--dump-dir"]
    assert main([*base, str(one)]) == 0
    assert main([*base, str(jobs), "--nj", "2"]) == 0
    for index in (1, 0):
        assert main([*base, str(sharded), "--shard", f"{index}/2"]) == 0
    assert not (sharded / "index.json").exists()  # incomplete until merged
    assert main(["kmeans", "merge-sample", str(sharded)]) == 0
    index = json.loads((one / "index.json").read_text())
    assert len(index["shards"]) >= 3
    for other in (jobs, sharded):
        assert json.loads((other / "index.json").read_text()) == index
        for entry in index["shards"]:
            assert (other / entry["file"]).read_bytes() == (one / entry["file"]).read_bytes()
    # the fit on the merged sharded sample equals the fit on the unsharded one
    fits = []
    for dump in (one, sharded):
        out = tmp_path / f"km-{dump.name}"
        args = ["kmeans", "fit", "--data", str(corpus), "--out", str(out), "--n-clusters", "6", "--dump-dir", str(dump)]
        assert main([*args, *SAMPLE, *FAST]) == 0
        fits.append(load_file(str(out / "kmeans.safetensors")))
    assert fits[0].keys() == fits[1].keys()
    for name in fits[0]:  # the header's metadata may differ (when it was written); the tensors may not
        assert torch.equal(fits[0][name], fits[1][name]), name


def test_dump_holds_each_sampled_utterance_alone_in_key_order(corpus: Path, tmp_path: Path) -> None:
    dump_dir = tmp_path / "dump"
    assert main(["kmeans", "sample", "--data", str(corpus), *SAMPLE, "--dump-dir", str(dump_dir)]) == 0
    dump = FeatureDump(dump_dir)
    dataset = AudioDataset(corpus)
    keyed = sorted((utterance_key(0, 0, utt), i) for i, utt in enumerate(dataset.ids) if utterance_key(0, 0, utt) < 0.8)
    module = resolve_source("mfcc").eval()
    rows = []
    for _, i in keyed:
        batch = collate([dataset[i]])
        with torch.no_grad():
            features, lengths = module(batch.waveforms, batch.lengths)
        rows.append(features[0, : int(lengths[0])])
    expected = torch.cat(rows).numpy()
    stored = np.concatenate([np.load(dump_dir / entry["file"]) for entry in dump.index["shards"]])
    assert dump.index["utterances"] == len(keyed) < 11
    np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-3)


def test_a_dump_of_other_settings_is_refused(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dump_dir = tmp_path / "dump"
    assert main(["kmeans", "sample", "--data", str(corpus), *SAMPLE, "--dump-dir", str(dump_dir)]) == 0
    capsys.readouterr()
    args = ["kmeans", "fit", "--data", str(corpus), "--out", str(tmp_path / "km"), "--dump-dir", str(dump_dir)]
    assert main([*args, "--sample-fraction", "0.5", "--set", "sample_chunk=2", "--device", "cpu", *FAST]) == 2
    assert "other settings (sample_fraction)" in capsys.readouterr().err
