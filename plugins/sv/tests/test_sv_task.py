"""The sv DownstreamTask without the trainer: state, options, loss, margin warm-up, bad labels."""

from __future__ import annotations

import pytest
import torch
from audiossl_sv.plugin import plugin
from audiossl_sv.task import SVTask, SVTaskConfig, create_task

from audiossl.data.dataset import Batch
from audiossl.data.kaldi import DataDir
from audiossl.errors import ConfigError, DataError


def _batch(speakers: list[str]) -> Batch:
    n = len(speakers)
    return Batch([f"u{i}" for i in range(n)], torch.zeros(n, 10), torch.full((n,), 10), {"spk": speakers})


def _data(tmp_path, utt2spk):
    return DataDir(wav_scp={u: f"/x/{u}.wav" for u in utt2spk}, utt2spk=utt2spk).save(tmp_path / "data")


def test_prepare_state(tmp_path):
    data = _data(tmp_path, {"a1": "b", "a2": "a", "a3": "b"})
    state = SVTask().prepare(data, tmp_path)
    assert state["speakers"] == ["a", "b"] and state["train_dir"] == str(data.resolve())


def test_prepare_needs_two_speakers(tmp_path):
    data = _data(tmp_path, {"a1": "a", "a2": "a"})
    with pytest.raises(DataError, match="at least 2 speakers") as error:
        SVTask().prepare(data, tmp_path)
    assert error.value.path == str(data / "utt2spk")


def test_options_roundtrip_and_validation():
    task = SVTask(embedding_dim=16, margin=0.3, score_norm="asnorm")
    again = create_task(**task.options())
    assert again.config == task.config
    assert task.with_options(trials="t").config.trials == "t"
    with pytest.raises(ConfigError, match="score_norm"):
        SVTask(score_norm="znorm")
    with pytest.raises(ConfigError, match="unknown key"):
        SVTask(margn=0.2)


def test_loss_warmup_and_unknown_speaker():
    torch.manual_seed(0)
    task = SVTask(hidden_dim=8, attention_dim=4, embedding_dim=6, margin=0.2, margin_warmup_steps=4)
    state = {"speakers": ["a", "b", "c"]}
    head = task.make_head(5, state).train()
    hidden, lengths = torch.randn(4, 7, 5), torch.tensor([7, 5, 3, 7])
    batch = _batch(["a", "c", "b", "a"])
    margins = [task.loss(head, hidden, lengths, batch, state).metrics["margin"] for _ in range(6)]
    assert margins == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2, 0.2])
    head.eval()
    out = task.loss(head, hidden, lengths, batch, state)
    assert int(head.steps) == 6  # evaluation batches do not advance the warm-up
    embeddings = head.embed(hidden, lengths)
    targets = torch.tensor([0, 2, 1, 0])
    torch.testing.assert_close(out.total, head.classifier(embeddings, targets, 0.2))
    assert 0.0 <= out.metrics["accuracy"] <= 1.0
    with pytest.raises(DataError, match="'z' was not among the training speakers"):
        task.loss(head, hidden, lengths, _batch(["a", "z", "b", "a"]), state)


def test_plugin_object():
    sv = plugin()
    assert sv.name == "sv" and sv.labels == ("spk",)
    assert isinstance(sv.task_factory(), SVTask)
    names = {c.name or c.callback.__name__ for c in sv.cli.registered_commands}
    assert names == {"train", "embed", "score", "evaluate", "make-trials"}
    assert SVTaskConfig().margin == 0.2
