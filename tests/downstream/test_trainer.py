"""The downstream trainer: exact resume, run dir contents, evaluation from a run dir, bad input."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch

from audiossl.data.kaldi import read_table, write_table
from audiossl.downstream import DownstreamConfig, evaluate_downstream, load_downstream, train_downstream
from audiossl.downstream.trainer import read_run_info
from audiossl.errors import ConfigError, DataError
from audiossl.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from audiossl.train.logging import read_records

sys.path.insert(0, str(Path(__file__).resolve().parent / "thirdparty"))
from audiossl_spkid import make_task  # noqa: E402  (the third-party example task)


def config(**changes) -> DownstreamConfig:
    base = {"max_steps": 4, "batch_seconds": 4.0, "log_every": 1, "checkpoint_every": 2, "device": "cpu", "lr": 1e-2}
    return DownstreamConfig(**{**base, **changes})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    saved = load_checkpoint(latest_checkpoint(run_dir))
    return {
        **{f"head.{k}": v for k, v in saved["head"].items()},
        **{f"up.{k}": v for k, v in saved["upstream"].items()},
    }


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_resumed_run_equals_a_straight_run(pretrained, corpus, tmp_path, mode):
    settings = config(mode=mode, freeze_steps=1, max_utt_seconds=0.8)  # crops draw from the seeded epoch
    straight = train_downstream(make_task(), str(pretrained), corpus, tmp_path / "straight", settings)
    assert straight.step == 4
    train_downstream(
        make_task(), str(pretrained), corpus, tmp_path / "split", config(**{**vars(settings), "max_steps": 2})
    )
    resumed = train_downstream(make_task(), str(pretrained), corpus, tmp_path / "split", settings, resume=True)
    assert resumed.step == 4
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    encoder_saved = any(name.startswith("up.encoder.") for name in a)
    assert encoder_saved == (mode == "finetune")  # a frozen pretrained encoder is reloaded from its spec
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    losses = [r["loss"] for r in read_records(tmp_path / "straight" / "train.jsonl")]
    assert losses == [r["loss"] for r in read_records(tmp_path / "split" / "train.jsonl")]
    if mode == "finetune":  # the encoder moved (after the frozen first step)
        initial = load_pretrained_weights(pretrained)
        moved = [k for k, v in a.items() if k.startswith("up.encoder.encoder.") and not torch.equal(v, initial[k])]
        assert moved


def load_pretrained_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from audiossl.train import load_pretrained

    return {f"up.encoder.{k}": v for k, v in load_pretrained(run_dir).state_dict().items()}


def test_run_dir_holds_what_evaluation_needs(pretrained, corpus, tmp_path):
    run = tmp_path / "run"
    settings = config(keep_last=1, eval_every=2)
    result = train_downstream(make_task(), str(pretrained), corpus, run, settings, valid_dir=corpus)
    assert [step for step, _ in list_checkpoints(run)] == [4]  # keep_last=1
    for name in ("downstream.json", "task_state.json", "train.jsonl", "loss.png"):
        assert (run / name).is_file(), name
    info = read_run_info(run)
    assert info["task"] == "spkid" and info["upstream"] == str(pretrained.resolve())
    assert info["upstream_info"]["dim"] == 32 and info["config"]["mode"] == "frozen"
    assert json.loads((run / "task_state.json").read_text())["speakers"] == ["spk01", "spk02"]
    assert result.valid_loss is not None and len(read_records(run / "train.jsonl", "valid")) == 2
    saved = load_checkpoint(latest_checkpoint(run))
    assert not any(key.startswith("encoder.") for key in saved["upstream"])  # a frozen encoder is not copied
    model = load_downstream(run, task=make_task(), device="cpu")
    assert not model.head.training and not model.upstream.training
    metrics = evaluate_downstream(run, corpus, tmp_path / "eval", task=make_task(), device="cpu")
    assert 0.0 <= metrics["accuracy"] <= 1.0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["metrics"] == metrics and report["task"] == "spkid"


def test_fbank_upstream_trains_without_layer_weights(corpus, tmp_path):
    result = train_downstream(make_task(), "fbank", corpus, tmp_path / "run", config(max_steps=2))
    assert result.step == 2 and result.loss == result.loss  # finite
    # no layer weights and no encoder copy: only the standardisation statistics (one row: the fbank output)
    upstream_state = load_checkpoint(latest_checkpoint(tmp_path / "run"))["upstream"]
    assert set(upstream_state) == {"feature_mean", "feature_std"} and upstream_state["feature_mean"].shape == (1, 80)


def test_refuses_to_overwrite_and_resumes_a_run_without_checkpoint_from_step_0(pretrained, corpus, tmp_path, caplog):
    # A run stopped before its first checkpoint (here: never started) is resumed from step 0, and says so.
    with caplog.at_level(logging.INFO, logger="audiossl.downstream"):
        result = train_downstream(make_task(), "fbank", corpus, tmp_path / "run", config(max_steps=1), resume=True)
    assert result.step == 1
    assert f"resume: no checkpoint in {tmp_path / 'run'} yet" in caplog.text and "from step 0" in caplog.text
    with pytest.raises(ConfigError, match="already has checkpoints"):
        train_downstream(make_task(), "fbank", corpus, tmp_path / "run", config(max_steps=2))
    with pytest.raises(ConfigError, match="config.lr"):
        train_downstream(make_task(), "fbank", corpus, tmp_path / "run", config(max_steps=2, lr=0.5), resume=True)


def test_missing_label_table_is_named(corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("wav"))
    (data / "utt2spk").unlink()
    (data / "spk2utt").unlink()
    with pytest.raises(DataError) as caught:
        train_downstream(make_task(), "fbank", data, tmp_path / "run", config(max_steps=1))
    assert caught.value.path == str(data / "utt2spk")


def test_incomplete_label_table_is_named(corpus, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("wav"))
    table = read_table(data / "utt2spk")
    table.pop(sorted(table)[0])
    write_table(data / "utt2spk", table)
    with pytest.raises(DataError, match="no 'spk' label") as caught:
        train_downstream(make_task(), "fbank", data, tmp_path / "run", config(max_steps=1))
    assert caught.value.path == str(data / "utt2spk")
