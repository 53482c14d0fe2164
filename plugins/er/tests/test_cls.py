"""The generic classifier: any utt2<label>, the linear-probe head, the probe beside the trained head, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from audiossl_er import cls_plugin, make_cls_task, make_task

from audiossl.cli.main import main
from audiossl.data.kaldi import read_table, write_table
from audiossl.downstream import DownstreamConfig, evaluate_downstream, load_downstream, train_downstream
from audiossl.downstream.probe import fit_probe, pooled_layers


def fast(**changes) -> DownstreamConfig:
    base = {"max_steps": 3, "batch_seconds": 6.0, "log_every": 1, "checkpoint_every": 3, "device": "cpu"}
    return DownstreamConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def colours(corpus, tmp_path_factory) -> Path:
    """The corpus with an arbitrary label table, utt2colour (three classes), and no utt2emo."""
    data = tmp_path_factory.mktemp("colours") / "data"
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("wav", "utt2emo"))
    ids = sorted(read_table(data / "utt2spk"))
    write_table(data / "utt2colour", {utt: ["red", "green", "blue"][i % 3] for i, utt in enumerate(ids)})
    return data


def test_any_label_table_trains_and_reports_beside_the_probe(colours, tmp_path):
    task = make_cls_task(label="colour")
    train_downstream(task, "fbank-raw", colours, tmp_path / "run", fast())
    state = json.loads((tmp_path / "run" / "task_state.json").read_text())
    assert state["classes"] == ["blue", "green", "red"]
    assert (tmp_path / "run" / "probe.npz").is_file() and (tmp_path / "run" / "probe.json").is_file()
    metrics = evaluate_downstream(tmp_path / "run", colours, tmp_path / "eval", device="cpu")
    assert {"WA", "UA", "probe/WA", "probe/UA", "probe/layer", "probe/C"} <= set(metrics)
    predictions = read_table(tmp_path / "eval" / "utt2colour_pred")
    truth = read_table(colours / "utt2colour")
    assert metrics["WA"] == pytest.approx(sum(predictions[u] == truth[u] for u in truth) / len(truth))
    report = (tmp_path / "eval" / "report.txt").read_text()
    assert "reference linear probe" in report and "trained head - probe" in report
    assert (tmp_path / "eval" / "confusion-probe.png").read_bytes()[:4] == b"\x89PNG"
    # the probe's figures are the probe refitted independently with scikit-learn on the same features
    model = load_downstream(tmp_path / "run", device="cpu")
    index = {name: i for i, name in enumerate(state["classes"])}
    _, x, labels = pooled_layers(model.upstream, colours, "colour")
    y = np.array([index[name] for name in labels])
    refit = fit_probe(x, y)  # no dev data in this tiny run: last layer, C = 1, as the run did
    assert metrics["probe/WA"] == pytest.approx(float((refit.predict(x) == y).mean()))


def test_linear_probe_head_is_the_model(colours, tmp_path):
    task = make_cls_task(label="colour", head="linear-probe")
    result = train_downstream(task, "fbank-raw", colours, tmp_path / "run", fast())
    assert result.step == 0 and result.checkpoint.name == "best.pt"
    metrics = evaluate_downstream(tmp_path / "run", colours, tmp_path / "eval", device="cpu")
    assert "probe/WA" not in metrics and 0.0 <= metrics["WA"] <= 1.0
    assert (tmp_path / "eval" / "report.txt").read_text().startswith("linear probe")


def test_cli_cls_train_evaluate_and_missing_label(colours, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["cls", "train", str(colours), "--label", "colour", "-u", "fbank-raw", "-o", str(run), "--max-steps", "2"]
    assert main([*args, "--batch-seconds", "6", "--device", "cpu", "--no-reference-probe"]) == 0
    assert not (run / "probe.npz").exists()
    assert main(["cls", "evaluate", str(run), str(colours), "-o", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    assert "WA" in capsys.readouterr().out
    code = main(["cls", "train", str(colours), "--label", "absent", "-u", "fbank-raw", "-o", str(tmp_path / "x")])
    assert code == 2
    assert str(colours / "utt2absent") in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_er_stays_backward_compatible(corpus, tmp_path):
    task = make_task(pooling="stats", normalize=True)  # the old default, so the old options below fit the head
    assert task.name == "er" and task.labels == ("emo",) and "label" not in task.options()
    train_downstream(task, "fbank-raw", corpus, tmp_path / "run", fast(max_steps=1))
    info = json.loads((tmp_path / "run" / "downstream.json").read_text())
    assert info["task"] == "er"
    old = {"pooling": "stats", "hidden_dim": 0, "class_weights": False, "dropout": 0.1, "normalize": True}
    info["task_options"] = old  # as an er run saved them before the generic classifier existed
    (tmp_path / "run" / "downstream.json").write_text(json.dumps(info))
    metrics = evaluate_downstream(tmp_path / "run", corpus, tmp_path / "eval", device="cpu")
    assert (tmp_path / "eval" / "utt2emo_pred").is_file() and "probe/WA" in metrics
    assert cls_plugin().name == "cls" and cls_plugin().task_factory(label="digit").labels == ("digit",)
