"""The sv plugin end to end on a tiny synthetic corpus: train a few steps, evaluate, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audiossl_sv.evaluation import evaluate_frozen
from audiossl_sv.scoring import load_embeddings, read_scores
from audiossl_sv.task import SVTask, SVTaskConfig
from audiossl_sv.trials import read_trials

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir
from audiossl.data.subset import split
from audiossl.downstream.trainer import DownstreamConfig, evaluate_downstream, load_downstream, train_downstream
from audiossl.errors import ConfigError, DataError
from audiossl.testing.downstream import tiny_corpus, tiny_pretrained

#: A head small enough for a CPU test.
TINY_TASK = {"hidden_dim": 16, "attention_dim": 8, "embedding_dim": 8, "margin_warmup_steps": 2, "top_n": 3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Five synthetic speakers: three to train on, two unseen ones to verify; and a tiny pretrained checkpoint."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("sv")
    data = DataDir.load(tiny_corpus(root / "corpus", speakers=5, utts_per_speaker=3))
    parts = split(data, {"train": 3, "test": 2}, by="speaker", seed=0)
    dirs = {name: part.save(root / name) for name, part in parts.items()}
    dirs["pretrained"] = tiny_pretrained(root / "ssl", dirs["train"], steps=1)
    return dirs


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "sv"
    task = SVTask(**TINY_TASK, score_norm="mean+asnorm")
    config = DownstreamConfig(max_steps=3, device="cpu", batch_seconds=8.0, max_utt_seconds=1.0, log_every=1)
    result = train_downstream(task, str(corpus["pretrained"]), corpus["train"], run, config)
    assert result.step == 3 and np.isfinite(result.loss)
    return run


def _check_outputs(out: Path, metrics: dict) -> None:
    assert 0.0 <= metrics["eer_percent"] <= 100.0
    for p in ("0.01", "0.05"):
        assert 0.0 <= metrics[f"min_dcf_{p}"] <= 1.0
    assert metrics["num_trials"] > 0 and 0 < metrics["num_targets"] < metrics["num_trials"]
    trials, scores = read_scores(out / "scores")
    assert len(trials) == metrics["num_trials"] and np.isfinite(scores).all()
    assert (out / "det.png").read_bytes()[:4] == b"\x89PNG"
    assert len(load_embeddings(out / "embeddings.ark")) == 6  # every test utterance


def test_train_and_evaluate(corpus, trained, tmp_path):
    model = load_downstream(trained, device="cpu")
    assert int(model.head.steps) == 3  # the margin warm-up counter is checkpointed
    assert model.head.margin == pytest.approx(0.2)
    records = [json.loads(line) for line in (trained / "train.jsonl").read_text().splitlines()]
    margins = [r["metrics"]["margin"] for r in records if r.get("kind") == "train"]
    assert margins == pytest.approx([0.0, 0.1, 0.2])
    metrics = evaluate_downstream(trained, corpus["test"], tmp_path / "eval", device="cpu")
    _check_outputs(tmp_path / "eval", metrics)
    trials = read_trials(tmp_path / "eval" / "trials")  # generated: every target pair, as many non-targets
    assert sum(t.label for t in trials) == 6 and len(trials) == 12
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["task"] == "sv" and report["metrics"]["eer_percent"] == pytest.approx(metrics["eer_percent"])


def test_frozen_baseline(corpus, tmp_path):
    config = SVTaskConfig(**TINY_TASK)
    upstream = str(corpus["pretrained"])
    metrics = evaluate_frozen(upstream, corpus["test"], tmp_path / "mix", config, device="cpu")
    _check_outputs(tmp_path / "mix", metrics)
    layer = evaluate_frozen(upstream, corpus["test"], tmp_path / "l0", config, layer=0, device="cpu")
    assert 0.0 <= layer["eer_percent"] <= 100.0
    assert json.loads((tmp_path / "l0" / "metrics.json").read_text())["baseline"].startswith("mean-pooled layer 0")
    with pytest.raises(ConfigError, match="fbank upstream normalises"):
        evaluate_frozen("fbank", corpus["test"], tmp_path / "fbank", config, device="cpu")


def test_cli(corpus, trained, tmp_path):
    trials = tmp_path / "trials"
    assert main(["sv", "make-trials", str(corpus["test"]), "-o", str(trials), "--num-trials", "8", "--seed", "1"]) == 0
    assert len(read_trials(trials)) == 8
    ark = tmp_path / "x.ark"
    assert main(["sv", "embed", str(corpus["test"]), "--run", str(trained), "-o", str(ark), "--device", "cpu"]) == 0
    assert next(iter(load_embeddings(ark).values())).shape == (8,)
    scores = tmp_path / "scores"
    args = ["sv", "score", str(trials), "-e", str(ark), "-o", str(scores), "--cohort", str(ark), "--top-n", "2"]
    assert main([*args, "--det", str(tmp_path / "det.png")]) == 0
    assert len(read_scores(scores)[0]) == 8 and (tmp_path / "det.png").is_file()
    out = tmp_path / "eval"
    args = ["sv", "evaluate", str(corpus["test"]), "--run", str(trained), "-o", str(out), "--trials", str(trials)]
    assert main([*args, "--score-norm", "none", "--device", "cpu"]) == 0
    assert len(read_scores(out / "scores")[0]) == 8 and not (out / "trials").exists()


def test_cli_train_flags(corpus, tmp_path):
    run = tmp_path / "run"
    args = ["sv", "train", str(corpus["train"]), "-u", "fbank", "-o", str(run), "--max-steps", "1"]
    args += ["--device", "cpu", "--batch-seconds", "8", "--task-set", "embedding_dim=4", "--task-set", "hidden_dim=0"]
    assert main(args) == 0
    assert json.loads((run / "downstream.json").read_text())["task_options"]["embedding_dim"] == 4


def test_unknown_utterance_in_trials(corpus, trained, tmp_path, capsys):
    first, second = DataDir.load(corpus["test"]).utterance_ids[:2]
    trials = tmp_path / "trials"
    trials.write_text(f"1 {first} {second}\n0 {first} nobody\n")
    args = ["sv", "evaluate", str(corpus["test"]), "-u", str(corpus["pretrained"]), "-o", str(tmp_path / "o")]
    args += ["--trials", str(trials), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{trials}:2:" in err and "'nobody'" in err


def test_missing_utt2spk(corpus, tmp_path):
    data = DataDir.load(corpus["train"])
    data.utt2spk = {}
    bare = data.save(tmp_path / "bare")
    with pytest.raises(DataError, match="utt2spk"):
        train_downstream(SVTask(**TINY_TASK), "fbank", bare, tmp_path / "run", DownstreamConfig(max_steps=1))
    with pytest.raises(DataError, match="utt2spk"):
        evaluate_frozen(str(corpus["pretrained"]), bare, tmp_path / "o", SVTaskConfig(), device="cpu")
