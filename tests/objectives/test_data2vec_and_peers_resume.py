"""Resume exactness of the issue-20 objectives (data2vec, bestrq, wavlm, distill) through the real trainer.

A run of 3 steps straight and a run stopped after step 1 then resumed must end with equal
state dicts, teacher (data2vec), frozen quantizer (bestrq, wavlm) and heads included; the
distilled student's teacher is reloaded from its path and stays out of the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiossl.data.kaldi import DataDir

RATE = 16000


def write_data(root: Path, count: int = 6) -> Path:
    """``count`` short two-tone utterances with a little noise, as a Kaldi data dir."""
    rng = np.random.default_rng(0)
    data = DataDir(utt2dur={})
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        utt = f"spk{i % 2}-utt{i}"
        samples = int(RATE * (0.3 + 0.05 * i))
        t = np.arange(samples) / RATE
        wave = 0.3 * np.sin(2 * np.pi * (120 + 80 * (i % 3)) * t) + 0.05 * rng.standard_normal(samples)
        path = root / f"{utt}.wav"
        soundfile.write(path, wave.astype(np.float32), RATE)
        data.wav_scp[utt], data.utt2spk[utt], data.utt2dur[utt] = str(path), f"spk{i % 2}", samples / RATE
    data.save(root / "data")
    return root / "data"


SPANS = {"kind": "span", "start_prob": 0.2, "span_length": 2, "min_spans": 1}

OBJECTIVES = {
    "data2vec": {"mask": SPANS, "top_k": 2, "ema_decay": 0.9, "ema_end_decay": 0.99, "ema_anneal_end_step": 3},
    "bestrq": {"mask": SPANS, "quantizer": {"codebook_size": 16, "codebook_dim": 4}},
    "wavlm": {"mask": SPANS, "quantizer": {"codebook_size": 16}, "code_dim": 8, "mix": {"prob": 1.0}},
}


def tiny_run_config(objective: str, settings: dict, layers: int = 2):
    from audiossl.train.config import config_from_dict

    return config_from_dict(
        {
            "data": {
                "sample_rate": RATE,
                "max_seconds_per_batch": 1.2,
                "max_utt_seconds": 1.0,
                "num_workers": 0,
                "frontend": "fbank",
                "frontend_config": {"num_mel_bins": 32},
                "normalize": "utterance",
            },
            "encoder": {
                "family": "ast",
                "preset": "tiny",
                "overrides": {
                    "dim": 16,
                    "num_layers": layers,
                    "num_heads": 2,
                    "input": {"kind": "frame", "frame_stack": 2, "num_bins": 32, "conv_pos_kernel": 8},
                },
            },
            "objective": {"name": objective, "config": settings},
            "optim": {"lr": 3.0e-3, "warmup_steps": 1},
            "run": {"max_steps": 3, "device": "cpu", "log_every": 1, "checkpoint_every": 1, "tensorboard": False},
        }
    )


def straight_and_resumed(config, data: Path, root: Path) -> tuple[dict, dict]:
    """Final model states of a straight 3-step run and of one stopped at step 1 and resumed."""
    from audiossl.train import pretrain
    from audiossl.train.checkpoint import checkpoint_path, load_checkpoint

    pretrain(config, [data], root / "straight")

    def stop_at_one(trainer):  # noqa: ANN001
        if trainer.step == 1:
            trainer.request_stop("test")

    pretrain(config, [data], root / "resumed", callbacks=[stop_at_one])
    pretrain(config, [data], root / "resumed", resume=True)
    straight = load_checkpoint(checkpoint_path(root / "straight", 3))["model"]
    resumed = load_checkpoint(checkpoint_path(root / "resumed", 3))["model"]
    return straight, resumed


def assert_equal_states(straight: dict, resumed: dict) -> None:
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_resume_is_exact(name: str, corpus: Path, tmp_path: Path) -> None:
    straight, resumed = straight_and_resumed(tiny_run_config(name, OBJECTIVES[name]), corpus, tmp_path)
    assert_equal_states(straight, resumed)
    if name == "data2vec":
        teacher = [key for key in straight if key.startswith("teacher.")]
        assert teacher, "the EMA teacher must be in the state dict"
        # The teacher lags behind the student (the EMA moved it, but not all the way).
        lagging = [k for k in teacher if not torch.equal(straight[k], straight["encoder." + k[len("teacher.") :]])]
        assert lagging
    else:
        assert "quantizer.projection" in straight and "quantizer.codebooks" in straight


def test_distilled_student_resumes_exactly_and_its_teacher_stays_out_of_the_checkpoint(
    corpus: Path, tmp_path: Path
) -> None:
    from audiossl.train import pretrain

    teacher_config = tiny_run_config("bestrq", OBJECTIVES["bestrq"])
    pretrain(teacher_config, [corpus], tmp_path / "teacher")
    settings = {"teacher": str(tmp_path / "teacher"), "teacher_layers": [1, 2]}
    straight, resumed = straight_and_resumed(tiny_run_config("distill", settings, layers=1), corpus, tmp_path)
    assert_equal_states(straight, resumed)
    assert not any(key.startswith(("teacher", "_teacher")) for key in straight)
    assert {"heads.0.weight", "heads.1.weight"} <= set(straight)
