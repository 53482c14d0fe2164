"""features stats: --nj and --shard + merge-stats give exactly the one-process statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.audio.frontends import create_frontend
from audiossl.audio.normalize import GlobalStats
from audiossl.cli.main import main
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.features import compute_global_stats, compute_stats_part, merge_stats_parts
from audiossl.data.shards import find_parts

OPTIONS = {"num_mel_bins": 24}


def _assert_same(a: GlobalStats, b: GlobalStats) -> None:
    assert a.count == b.count and a.utterances == b.utterances
    np.testing.assert_array_equal(a.sum, b.sum)  # bit-identical: same chunks, added in the same order
    np.testing.assert_array_equal(a.sum_squares, b.sum_squares)


def test_shards_equal_one_process_bit_for_bit(corpus: Path, tmp_path: Path) -> None:
    whole = compute_global_stats(corpus, "fbank", OPTIONS, chunk_size=3, batch_seconds=4.0, progress=False)
    paths = []
    for index in (1, 0, 2):  # any order of arrival
        part = compute_stats_part(corpus, "fbank", OPTIONS, shard=f"{index}/3", chunk_size=3, batch_seconds=4.0)
        paths.append(tmp_path / f"part{index}.npz")
        part.save(paths[-1])
    _assert_same(whole, merge_stats_parts(paths))
    assert whole.utterances == 11


def test_statistics_match_a_per_utterance_float64_loop(corpus: Path) -> None:
    stats = compute_global_stats(corpus, "fbank", OPTIONS, chunk_size=4, progress=False)
    frontend = create_frontend("fbank", OPTIONS).eval()
    dataset = AudioDataset(corpus, sample_rate=16000)
    rows = []
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        with torch.no_grad():
            features, lengths = frontend(batch.waveforms, batch.lengths)
        rows.append(features[0, : int(lengths[0])].double())
    frames = torch.cat(rows)  # (N, C)
    assert stats.count == frames.shape[0]
    np.testing.assert_allclose(stats.mean, frames.mean(0).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.var, frames.var(0, unbiased=False).numpy(), rtol=1e-4, atol=1e-4)


def test_a_missing_shard_is_refused_naming_it(corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "p0.npz"
    compute_stats_part(corpus, "fbank", OPTIONS, shard="0/2", chunk_size=3).save(path)
    with pytest.raises(Exception, match="1/2 missing"):
        merge_stats_parts([path])


def test_cli_jobs_and_shards_then_merge_stats(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    one, jobs, merged = tmp_path / "one.npz", tmp_path / "jobs.npz", tmp_path / "cmvn.npz"
    stats = ["features", "stats", str(corpus), "--chunk-size", "4", "--out"]
    assert main([*stats, str(one)]) == 0
    assert main([*stats, str(jobs), "--nj", "2"]) == 0  # 3 chunks: 2 in one process, 1 in the other
    for index in range(2):
        assert main([*stats, str(merged), "--shard", f"{index}/2"]) == 0
    assert [path.name for path in find_parts(merged)] == ["cmvn.shard-0-of-2.npz", "cmvn.shard-1-of-2.npz"]
    assert main(["features", "merge-stats", str(merged)]) == 0
    _assert_same(GlobalStats.load(one), GlobalStats.load(jobs))
    _assert_same(GlobalStats.load(one), GlobalStats.load(merged))
    assert find_parts(merged) == []  # parts removed once merged
    capsys.readouterr()
    assert main(["features", "stats", str(corpus), "--out", str(merged), "--shard", "3/2"]) == 2
    assert "shard index must be in 0..1, got 3/2" in capsys.readouterr().err
    assert main(["features", "merge-stats", str(tmp_path / "none.npz")]) == 2
    assert "no shard parts" in capsys.readouterr().err
