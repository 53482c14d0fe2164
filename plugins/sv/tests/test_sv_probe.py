"""The linear-probe reference of sv: fbank-raw accepted, scores equal a numpy cosine on standardised pooled features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audiossl_sv.evaluation import evaluate_frozen
from audiossl_sv.probe import evaluate_probe, probe_spec
from audiossl_sv.scoring import read_scores
from audiossl_sv.task import SVTask, SVTaskConfig

from audiossl.cli.main import main
from audiossl.data.dataset import AudioDataset
from audiossl.data.kaldi import DataDir
from audiossl.data.subset import split
from audiossl.downstream.trainer import DownstreamConfig, train_downstream
from audiossl.downstream.upstream import load_encoder
from audiossl.errors import ConfigError
from audiossl.testing.downstream import tiny_corpus

TINY_TASK = {"hidden_dim": 8, "attention_dim": 4, "embedding_dim": 4, "top_n": 3}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    """Four synthetic speakers: two to train on (the statistics), two unseen ones to verify."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("svprobe")
    data = DataDir.load(tiny_corpus(root / "corpus", speakers=4, utts_per_speaker=3))
    parts = split(data, {"train": 2, "test": 2}, by="speaker", seed=0)
    return {name: part.save(root / name) for name, part in parts.items()}


def _pooled_one_by_one(spec: str, data_dir: Path) -> dict[str, np.ndarray]:
    """Mean over frames of each utterance's features, computed alone (no batch, no padding), in numpy."""
    encoder = load_encoder(spec).eval()
    dataset = AudioDataset(data_dir, sample_rate=encoder.sample_rate)
    out = {}
    for index in range(len(dataset)):
        item = dataset[index]
        waveform = item.waveform.reshape(1, -1)
        with torch.no_grad():
            features = encoder(waveform, torch.tensor([waveform.shape[1]])).last[0].double().numpy()  # (S, D)
        out[item.id] = features.mean(axis=0)
    return out


def test_probe_scores_equal_numpy_cosine(dirs, tmp_path):
    config = SVTaskConfig(**TINY_TASK)
    metrics, report = evaluate_probe("fbank-raw", dirs["test"], tmp_path / "p", config, stats_dir=dirs["train"])
    test = _pooled_one_by_one("fbank-raw", dirs["test"])
    reference = np.stack(list(_pooled_one_by_one("fbank-raw", dirs["train"]).values()))  # (N, D)
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    trials, scores = read_scores(tmp_path / "p" / "scores")
    for trial, score in zip(trials, scores, strict=True):
        a, b = (test[trial.enroll] - mean) / std, (test[trial.test] - mean) / std
        assert score == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=2e-5)
    assert report["head"] == "linear-probe" and report["statistics_from"] == str(dirs["train"].resolve())
    assert metrics["num_trials"] == len(trials) > 0
    # without a reference dir, the statistics are the evaluation data's own
    _, own = evaluate_probe("fbank-raw", dirs["test"], tmp_path / "own", config)
    assert "label-free" in own["statistics_from"]


def test_fbank_raw_accepted_fbank_refused_with_the_right_message(dirs, tmp_path):
    config = SVTaskConfig(**TINY_TASK)
    metrics = evaluate_frozen("fbank-raw", dirs["test"], tmp_path / "raw", config, device="cpu")
    assert 0.0 <= metrics["eer_percent"] <= 100.0
    with pytest.raises(ConfigError, match="pool fbank-raw"):
        evaluate_frozen("fbank", dirs["test"], tmp_path / "cmvn", config, device="cpu")
    assert probe_spec("fbank:8000:64") == "fbank-raw:8000:64" and probe_spec("fbank-raw") == "fbank-raw"


def test_cli_evaluate_fbank_raw_and_help(dirs, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sv", "evaluate", str(dirs["test"]), "-u", "fbank-raw", "-o", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["head"] == "linear-probe" and report["upstream"] == "fbank-raw"
    mean_out = tmp_path / "mean"
    args = ["sv", "evaluate", str(dirs["test"]), "-u", "fbank-raw:16000:40", "-o", str(mean_out), "--head", "mean"]
    assert main(args) == 0
    assert json.loads((mean_out / "metrics.json").read_text())["baseline"].startswith("mean-pooled")
    args = ["sv", "evaluate", str(dirs["test"]), "-u", "fbank", "-o", str(tmp_path / "x"), "--head", "mean"]
    assert main(args) == 2
    assert "fbank-raw" in capsys.readouterr().err
    assert main(["sv", "evaluate", "--help"]) == 0
    assert "fbank-raw" in " ".join(capsys.readouterr().out.split())


def test_run_evaluation_reports_the_probe_beside_the_head(dirs, tmp_path, capsys):
    run = tmp_path / "run"
    config = DownstreamConfig(max_steps=2, device="cpu", batch_seconds=8.0, max_utt_seconds=1.0)
    train_downstream(SVTask(**TINY_TASK), "fbank", dirs["train"], run, config)
    out = tmp_path / "eval"
    assert main(["sv", "evaluate", str(dirs["test"]), "--run", str(run), "-o", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    probe = report["linear-probe"]
    assert probe["upstream"] == "fbank-raw:16000:80"  # the head's fbank, without the utterance CMVN
    assert probe["statistics_from"] == str(dirs["train"].resolve())
    head_trials = [(t.enroll, t.test) for t in read_scores(out / "scores")[0]]
    assert [(t.enroll, t.test) for t in read_scores(out / "linear-probe" / "scores")[0]] == head_trials
    assert "linear-probe EER" in capsys.readouterr().out
