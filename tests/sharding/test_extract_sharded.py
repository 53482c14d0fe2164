"""extract: --nj 2 and --shard I/N + extract-merge write the one-process output, file for file."""

from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from audiossl.cli.main import main
from audiossl.config import to_dict
from audiossl.data.kaldi import DataDir
from audiossl.data.wav_scp import load_utterance
from audiossl.embed import Embedder, load
from audiossl.encoders import create_encoder
from audiossl.testing.configs import tiny_encoder_config
from audiossl.train.checkpoint import save_checkpoint
from audiossl.train.config import config_from_dict, encoder_config, frontend_settings, plain
from audiossl.train.inputs import InputPipeline

TINY = plain(to_dict(tiny_encoder_config("ast", "frame")))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny AST in the trainer's checkpoint layout (no training needed)."""
    raw = {
        "data": {"sample_rate": 16000, "frontend": "fbank", "frontend_config": {"num_mel_bins": 32}},
        "encoder": {
            "family": "ast",
            "preset": "tiny",
            "overrides": plain(to_dict(tiny_encoder_config("ast", "frame"))),
        },
        "objective": {"name": "mspm"},
        "run": {"device": "cpu"},
    }
    config = config_from_dict(raw)
    settings = encoder_config(config)
    torch.manual_seed(0)
    encoder = create_encoder("ast", config=settings)
    state = {
        "format": 1,
        "step": 0,
        "model": {f"encoder.{key}": value for key, value in encoder.state_dict().items()},
        "inputs": InputPipeline(config.data, frontend_settings(config)).state_dict(),
        "config": plain(to_dict(config)),
        "encoder": {"family": "ast", "config": plain(to_dict(settings))},
    }
    return save_checkpoint(state, tmp_path_factory.mktemp("ckpt") / "ast.pt")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_same_files(one: Path, other: Path) -> None:
    expected_files = _files(one)
    files = _files(other)
    assert files.keys() == expected_files.keys()
    for rel, content in expected_files.items():
        expected = content.replace(str(one.resolve()).encode(), str(other.resolve()).encode())
        assert files[rel] == expected, rel  # Kaldi scp lines name their own dir; everything else is equal


def test_jobs_and_shards_write_the_same_ark(checkpoint, corpus, tmp_path, monkeypatch) -> None:
    from audiossl.embed import extract

    # encoder matmuls may round differently with another thread count: jobs run with this process's
    monkeypatch.setenv("AUDIOSSL_JOB_THREADS", str(torch.get_num_threads()))
    one, jobs, sharded = tmp_path / "one", tmp_path / "jobs", tmp_path / "sharded"
    common = dict(pooling="mean", format="ark", device="cpu", chunk_size=3)
    extract(str(checkpoint), corpus, one, **common)
    extract(str(checkpoint), corpus, jobs, num_jobs=2, **common)
    for index in (1, 0, 2):
        extract(str(checkpoint), corpus, sharded, shard=f"{index}/3", **common)
    assert main(["extract-merge", str(sharded)]) == 0
    assert len(list((one / "ark").glob("*.ark"))) == 4  # 11 utterances in chunks of 3
    _assert_same_files(one, jobs)
    _assert_same_files(one, sharded)
    assert not list(sharded.glob("shard-*")) and json.loads((sharded / "extract.json").read_text())["complete"]
    # and what they all hold is each utterance embedded alone
    data = DataDir.load(corpus)
    embedder = Embedder(load(checkpoint, device="cpu"), device="cpu")
    stored = {utt: np.asarray(a) for utt, a in kaldiio.load_scp(str(sharded / "feats.scp")).items()}
    assert sorted(stored) == sorted(data.utterance_ids)
    for utt in data.utterance_ids:
        waveform, rate = load_utterance(data, utt)
        alone = embedder.embed(waveform, sample_rate=rate, pooling="mean")[0].numpy()
        np.testing.assert_allclose(stored[utt], alone, rtol=1e-4, atol=1e-5)


def test_cli_shards_write_the_same_safetensors(checkpoint, corpus, tmp_path) -> None:
    base = ["extract", "-m", str(checkpoint), "--data", str(corpus), "--format", "safetensors", "--pool", "none"]
    base += ["--device", "cpu", "--chunk-size", "4"]
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    assert main([*base, "-o", str(one)]) == 0
    for index in range(2):
        assert main([*base, "-o", str(sharded), "--shard", f"{index}/2"]) == 0
    assert main(["extract-merge", str(sharded)]) == 0
    assert len(list((one / "safetensors").glob("*.safetensors"))) == 3
    _assert_same_files(one, sharded)


def test_merge_refuses_a_missing_shard(checkpoint: Path, corpus: Path, tmp_path: Path, capsys) -> None:
    from audiossl.embed import extract

    out = tmp_path / "partial"
    extract(str(checkpoint), corpus, out, shard="0/2", pooling="mean", format="npy", device="cpu", chunk_size=4)
    capsys.readouterr()
    assert main(["extract-merge", str(out)]) == 2
    assert "shard(s) 1/2 missing" in capsys.readouterr().err
