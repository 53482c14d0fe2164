"""Emotion recognition end to end on the synthetic corpus: train, evaluate, folds, CLI, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from audiossl_er import make_task, plugin
from audiossl_er.folds import leave_speaker_out_folds, speaker_folds
from audiossl_er.task import EmotionHead

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir, read_table, write_table
from audiossl.downstream import DownstreamConfig, evaluate_downstream, train_downstream
from audiossl.errors import ConfigError, DataError


def fast(**changes) -> DownstreamConfig:
    base = {"max_steps": 3, "batch_seconds": 6.0, "log_every": 1, "checkpoint_every": 3, "device": "cpu"}
    return DownstreamConfig(**{**base, **changes})


def copy_tables(corpus: Path, out: Path) -> Path:
    """The corpus tables without the audio (wav.scp keeps absolute paths)."""
    shutil.copytree(corpus, out, ignore=shutil.ignore_patterns("wav"))
    return out


def test_train_and_evaluate_end_to_end(pretrained, corpus, tmp_path):
    task = make_task(pooling="attentive", hidden_dim=16, class_weights=True)
    result = train_downstream(task, str(pretrained), corpus, tmp_path / "run", fast())
    assert result.step == 3 and result.loss == result.loss
    state = json.loads((tmp_path / "run" / "task_state.json").read_text())
    assert state["classes"] == ["angry", "happy", "neutral", "sad"] and state["counts"] == [3, 3, 3, 3]
    assert state["weights"] == pytest.approx([1.0] * 4)
    # evaluate finds the installed plugin by the name saved in the run (no task passed).
    metrics = evaluate_downstream(tmp_path / "run", corpus, tmp_path / "eval", device="cpu")
    assert 0.0 <= metrics["WA"] <= 1.0 and 0.0 <= metrics["UA"] <= 1.0
    assert {f"recall/{c}" for c in state["classes"]} <= set(metrics)
    assert metrics["UA"] == pytest.approx(sum(metrics[f"recall/{c}"] for c in state["classes"]) / 4)
    out = tmp_path / "eval"
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.txt").read_text()
    assert "WA (weighted accuracy" in report and "UA (unweighted accuracy" in report
    predictions = read_table(out / "utt2emo_pred")
    assert set(predictions) == set(read_table(corpus / "utt2emo")) and set(predictions.values()) <= set(
        state["classes"]
    )
    correct = sum(predictions[u] == e for u, e in read_table(corpus / "utt2emo").items())
    assert metrics["WA"] == pytest.approx(correct / len(predictions))
    assert json.loads((out / "metrics.json").read_text())["metrics"] == metrics


def test_class_weights_are_inverse_frequency(corpus, tmp_path):
    data = copy_tables(corpus, tmp_path / "data")
    emotions = read_table(data / "utt2emo")
    for utt in sorted(emotions)[:6]:
        emotions[utt] = "neutral"
    write_table(data / "utt2emo", emotions)
    counts = {c: list(emotions.values()).count(c) for c in sorted(set(emotions.values()))}
    state = make_task(class_weights=True).prepare(data, tmp_path)
    assert state["counts"] == list(counts.values())
    expected = [len(emotions) / (len(counts) * n) for n in counts.values()]
    assert state["weights"] == pytest.approx(expected)
    # The weighted loss equals a hand-computed weighted mean of per-item cross-entropies.
    task = make_task(class_weights=True)
    head = task.make_head(4, state)
    hidden, lengths = torch.randn(3, 5, 4), torch.tensor([5, 3, 2])
    from audiossl.data.dataset import Batch

    labels = [state["classes"][0], state["classes"][-1], state["classes"][-1]]
    batch = Batch(["a", "b", "c"], torch.zeros(3, 1), torch.ones(3), {"emo": labels})
    loss = task.loss(head.eval(), hidden, lengths, batch, state).total
    logits = head(hidden, lengths)
    targets = [0, len(counts) - 1, len(counts) - 1]
    per_item = [-torch.log_softmax(logits[i], -1)[t] * state["weights"][t] for i, t in enumerate(targets)]
    expected_loss = sum(per_item) / sum(state["weights"][t] for t in targets)
    torch.testing.assert_close(loss, expected_loss)


def test_unseen_test_class_is_named_with_file_and_line(pretrained, corpus, tmp_path):
    train_downstream(make_task(), "fbank", corpus, tmp_path / "run", fast(max_steps=1))
    data = copy_tables(corpus, tmp_path / "test")
    emotions = read_table(data / "utt2emo")
    odd = sorted(emotions)[2]
    emotions[odd] = "bored"
    write_table(data / "utt2emo", emotions)
    with pytest.raises(DataError, match="'bored'.*never seen in training") as caught:
        evaluate_downstream(tmp_path / "run", data, tmp_path / "eval", device="cpu")
    assert caught.value.path == str(data / "utt2emo") and caught.value.line == 3


def test_missing_emotion_labels_are_named(corpus, tmp_path):
    data = copy_tables(corpus, tmp_path / "data")
    (data / "utt2emo").unlink()
    with pytest.raises(DataError, match="utt2emo does not exist") as caught:
        train_downstream(make_task(), "fbank", data, tmp_path / "run", fast(max_steps=1))
    assert caught.value.path == str(data / "utt2emo")


def test_one_class_is_not_enough(corpus, tmp_path):
    data = copy_tables(corpus, tmp_path / "data")
    write_table(data / "utt2emo", {utt: "neutral" for utt in read_table(data / "utt2emo")})
    with pytest.raises(DataError, match="at least two emotion classes"):
        make_task().prepare(data, tmp_path)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="pooling"):
        make_task(pooling="max")
    head = EmotionHead(8, 3, pooling="stats", hidden_dim=0)
    assert head(torch.randn(2, 4, 8), torch.tensor([4, 2])).shape == (2, 3)
    assert isinstance(EmotionHead(8, 3, normalize=False).norm, torch.nn.Identity)


def test_options_round_trip_through_the_run(corpus, tmp_path):
    task = make_task(pooling="stats", hidden_dim=8, class_weights=True, dropout=0.0, normalize=False)
    train_downstream(task, "fbank-raw", corpus, tmp_path / "run", fast(max_steps=1))
    from audiossl.downstream import load_downstream

    model = load_downstream(tmp_path / "run", device="cpu")  # rebuilt through the installed plugin
    assert model.task.options() == task.options()
    assert isinstance(model.head.norm, torch.nn.Identity) and model.head.classifier[0].out_features == 8


def test_leave_speaker_out_folds(corpus, tmp_path):
    folds = leave_speaker_out_folds(corpus, tmp_path / "folds")
    assert [f.name for f in folds] == ["fold01", "fold02", "fold03"]
    everyone = DataDir.load(corpus)
    seen_test: list[str] = []
    for fold in folds:
        train, test = DataDir.load(fold / "train"), DataDir.load(fold / "test")
        assert set(train.utt2spk.values()).isdisjoint(test.utt2spk.values())
        assert set(train.utterance_ids) | set(test.utterance_ids) == set(everyone.utterance_ids)
        assert set(test.labels["emo"]) == set(test.utterance_ids) and test.text is not None
        seen_test += test.utterance_ids
    assert sorted(seen_test) == sorted(everyone.utterance_ids)  # every utterance tested exactly once
    saved = json.loads((tmp_path / "folds" / "folds.json").read_text())
    assert saved == {"fold01": ["spk01"], "fold02": ["spk02"], "fold03": ["spk03"]}
    assert speaker_folds(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(ConfigError, match="num_folds"):
        speaker_folds(["a", "b"], 3)


def test_cli_train_evaluate_folds(pretrained, corpus, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "eval"
    args = ["er", "train", str(corpus), "--upstream", str(pretrained), "--out", str(run), "--max-steps", "2"]
    args += ["--batch-seconds", "6", "--device", "cpu", "--pooling", "stats", "--set", "log_every=1"]
    assert main(args) == 0
    assert "finished step 2" in capsys.readouterr().out
    assert main(["er", "evaluate", str(run), str(corpus), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "WA" in printed and "UA" in printed and (out / "confusion.png").is_file()
    assert main(["er", "folds", str(corpus), "--out", str(tmp_path / "folds"), "--num-folds", "2"]) == 0
    assert len(json.loads((tmp_path / "folds" / "folds.json").read_text())) == 2
    assert main(["er", "train", str(tmp_path / "nowhere"), "-u", "fbank", "-o", str(tmp_path / "x")]) == 2


def test_plugin_entry_point_and_light_import():
    described = plugin()
    assert described.name == "er" and described.labels == ("emo",) and described.task_factory().name == "er"
    code = "import sys, audiossl_er; audiossl_er.plugin(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", "mounting the plugin at start-up must not import torch"
