"""What a run leaves behind (JSONL, TensorBoard, loss curve), health warnings, precisions, the trained encoder."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from train_helpers import tiny_config

from audiossl.data.dataset import AudioDataset, collate
from audiossl.train import load_pretrained, pretrain
from audiossl.train.checkpoint import checkpoint_path, load_checkpoint
from audiossl.train.logging import LossEMA, health_warnings, read_records


def test_logs_tensorboard_and_loss_curve(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    pretrain(tiny_config(run={"max_steps": 4, "log_every": 2, "tensorboard": True}), [varied_dir], run_dir)
    lines = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    train = [line for line in lines if line["kind"] == "train"]
    assert [line["step"] for line in train] == [2, 4]
    for record in train:
        assert {"lr", "loss", "loss_ema", "grad_norm", "parts", "metrics", "utt_per_s", "audio_s_per_s"} <= set(record)
        assert record["parts"]["square"] == pytest.approx(record["loss"])  # window means of the same values
        assert record["utt_per_s"] > 0 and record["audio_s_per_s"] > 0
    assert [line["event"] for line in lines if line["kind"] == "event"] == ["start", "finish"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "config.yaml").is_file()


def test_validation_loss_is_logged_and_picks_best(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(run={"max_steps": 4, "valid_data": [str(varied_dir)]})
    result = pretrain(config, [varied_dir], run_dir)
    valid = read_records(run_dir / "train.jsonl", "valid")
    assert [record["step"] for record in valid] == [2, 4]
    best = load_checkpoint(result.best)
    assert best["trainer"]["best"] == pytest.approx(min(record["loss"] for record in valid))


def test_best_only_among_checkpoints_with_a_validation(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(run={"max_steps": 6, "valid_every": 3, "valid_data": [str(varied_dir)]})
    result = pretrain(config, [varied_dir], run_dir)
    assert [record["step"] for record in read_records(run_dir / "train.jsonl", "valid")] == [3, 6]
    assert load_checkpoint(result.best)["step"] == 6  # checkpoints 2 and 4 had no validation


def test_health_warnings_for_collapse_and_length_drift(varied_dir, tmp_path, caplog):
    config = tiny_config(
        objective={"config": {"code_perplexity": 1.5, "length_drift": 3.0}}, run={"max_steps": 2, "log_every": 2}
    )
    with caplog.at_level(logging.WARNING, logger="audiossl.train"):
        pretrain(config, [varied_dir], tmp_path / "run")
    assert "codebook collapse" in caplog.text and "length drift" in caplog.text
    record = read_records(tmp_path / "run" / "train.jsonl")[-1]
    assert len(record["warnings"]) == 2
    assert health_warnings({"code_perplexity": 50.0, "length_drift": 0.5}, 4.0, 1.0) == []


def test_loss_ema_is_bias_corrected():
    ema = LossEMA(0.9)
    for _ in range(3):
        ema.update(2.0)
    assert ema.mean == pytest.approx(2.0)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_trains(precision, varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = pretrain(tiny_config(run={"max_steps": 2, "precision": precision}), [varied_dir], run_dir)
    assert result.step == 2
    state = load_checkpoint(checkpoint_path(run_dir, 2))
    assert all(value.dtype == torch.float32 for value in state["model"].values())  # master weights stay fp32
    assert bool(state["scaler"]) == (precision == "fp16")  # only fp16 needs a gradient scaler
    for record in read_records(run_dir / "train.jsonl"):
        assert torch.isfinite(torch.tensor(record["loss"]))


def test_load_pretrained_gives_the_trained_encoder_with_its_inputs(varied_dir, tmp_path):
    run_dir = tmp_path / "run"
    pretrain(tiny_config(run={"max_steps": 2}), [varied_dir], run_dir)
    model = load_pretrained(run_dir)
    weights = load_checkpoint(checkpoint_path(run_dir, 2))["model"]
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, weights[f"encoder.{name}"])
    batch = collate(AudioDataset(varied_dir, sample_rate=model.sample_rate)[[0, 1]])
    output = model(batch.waveforms, batch.lengths)
    assert len(output.layers) == 2 and output.last.shape[-1] == 32
    random_model = load_pretrained(run_dir, random_init=True)
    trained, fresh = model.encoder.state_dict(), random_model.encoder.state_dict()
    assert any(not torch.equal(trained[name], fresh[name]) for name in trained)
