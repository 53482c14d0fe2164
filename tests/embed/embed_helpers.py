"""Tiny audiossl checkpoints written directly (no training) and small data dirs for the embedding tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch

from audiossl.config import to_dict
from audiossl.data.kaldi import DataDir
from audiossl.encoders import create_encoder
from audiossl.testing.configs import tiny_encoder_config
from audiossl.train.checkpoint import save_checkpoint
from audiossl.train.config import config_from_dict, encoder_config, frontend_settings, plain
from audiossl.train.inputs import InputPipeline

SAMPLE_RATE = 16000


def tiny_run_config(family: str, input_kind: str) -> dict:
    """A raw pretraining config of a tiny ``family`` encoder reading ``input_kind`` tokens."""
    waveform = input_kind == "waveform"
    return {
        "data": {
            "sample_rate": SAMPLE_RATE,
            "frontend": "none" if waveform else "fbank",
            "frontend_config": {} if waveform else {"num_mel_bins": 32},
            "normalize": "utterance",
        },
        "encoder": {
            "family": family,
            "preset": "tiny",
            "overrides": plain(to_dict(tiny_encoder_config(family, input_kind))),
        },
        "objective": {"name": "mspm"},
        "run": {"device": "cpu"},
    }


def write_checkpoint(path: Path, family: str = "ast", input_kind: str = "frame", seed: int = 0) -> Path:
    """``path`` (a ``.pt`` file) holding a randomly initialised tiny model in the trainer's checkpoint layout."""
    config = config_from_dict(tiny_run_config(family, input_kind))
    settings = encoder_config(config)
    torch.manual_seed(seed)
    encoder = create_encoder(family, config=settings)
    inputs = InputPipeline(config.data, frontend_settings(config))
    state = {
        "format": 1,
        "step": 0,
        "model": {f"encoder.{key}": value for key, value in encoder.state_dict().items()},
        "inputs": inputs.state_dict(),
        "config": plain(to_dict(config)),
        "encoder": {"family": family, "config": plain(to_dict(settings))},
    }
    return save_checkpoint(state, path)


def write_data_dir(root: Path, seconds: list[float], sample_rate: int = SAMPLE_RATE, seed: int = 0) -> Path:
    """A data dir (wav.scp, utt2spk) of noisy tones lasting ``seconds`` each."""
    rng = np.random.default_rng(seed)
    data = DataDir()
    for i, duration in enumerate(seconds):
        utt = f"spk{i % 2}-utt{i:02d}"
        t = np.arange(round(duration * sample_rate)) / sample_rate
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(t.shape[0])
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave.astype(np.float32), sample_rate)
        data.wav_scp[utt] = str(path)
        data.utt2spk[utt] = f"spk{i % 2}"
    data.save(root / "data")
    return root / "data"
