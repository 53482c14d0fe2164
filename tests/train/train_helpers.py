"""Trainer test helpers: a tiny stand-in objective, small data dirs and a tiny config.

The stand-in keeps trainer tests independent of the real objectives' details. Its loss is a
mean over items of a per-item mean over valid tokens, so gradient averaging over processes
(DDP) or micro-batches (accumulation) equals the gradient of the union batch when the parts
have equal sizes. It draws its mask from the ``generator`` argument (what the trainer seeds per
batch) and add noise from torch's *global* generator (what checkpoints must save and restore),
report health metrics, and turn NaN at a chosen step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from torch import nn

from audiossl.data.kaldi import DataDir
from audiossl.encoders.base import Encoder
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import OBJECTIVES, LossOutput, Objective, ObjectiveSpec
from audiossl.train.config import PretrainConfig, config_from_dict

STANDIN = "standin"
SAMPLE_RATE = 16000


@dataclass(kw_only=True)
class StandinConfig:
    """The stand-in objective's knobs."""

    noise: float = 0.0
    """Scale of noise drawn from torch's global generator and added to the predictions."""
    mask_ratio: float = 0.3
    """Fraction of tokens replaced by the mask embedding (positions from the ``generator`` argument)."""
    nan_at_step: int | None = None
    """Return a NaN loss when called with this step."""
    code_perplexity: float | None = None
    """Report this ``code_perplexity`` metric."""
    length_drift: float | None = None
    """Report this ``length_drift`` metric."""


class StandinObjective(Objective):
    """Masked tokens -> encoder -> linear head; loss = mean over items of mean over tokens of (pred - 1)^2."""

    def __init__(self, encoder: Encoder, config: StandinConfig):
        super().__init__(encoder)
        self.config = config
        self.head = nn.Linear(encoder.dim, 1)

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        token_lengths = self.encoder.token_lengths(lengths)
        valid = lengths_to_mask(token_lengths, int(token_lengths.max()))  # (B, S)
        draws = torch.rand(valid.shape, generator=generator, device=valid.device)
        mask = (draws < self.config.mask_ratio) & valid
        mask[:, 0] = True  # every item masks something, so the mask embedding always gets a gradient
        output = self.encoder(features[:, : int(lengths.max())], lengths, mask=mask).without_prefix()
        predictions = self.head(output.last).squeeze(-1)  # (B, S)
        if self.config.noise:
            predictions = predictions + self.config.noise * torch.randn(predictions.shape, device=predictions.device)
        valid = lengths_to_mask(output.lengths, predictions.shape[1])
        per_token = (predictions.float() - 1.0).pow(2) * valid
        per_item = per_token.sum(dim=1) / valid.sum(dim=1).clamp(min=1)  # (B,)
        total = per_item.mean()
        if self.config.nan_at_step is not None and step == self.config.nan_at_step:
            total = total * math.nan
        metrics: dict[str, float] = {"masked_fraction": float(mask.sum() / valid.sum())}
        if self.config.code_perplexity is not None:
            metrics["code_perplexity"] = self.config.code_perplexity
        if self.config.length_drift is not None:
            metrics["length_drift"] = self.config.length_drift
        return LossOutput(total=total, parts={"square": total.detach()}, metrics=metrics)


def register_standin() -> None:
    """Register the stand-in under ``standin`` (idempotent)."""
    if STANDIN not in OBJECTIVES:
        OBJECTIVES.register(STANDIN)(ObjectiveSpec(STANDIN, StandinConfig, StandinObjective, "test stand-in"))


@contextlib.contextmanager
def standin_registered() -> Iterator[None]:
    """The stand-in is registered inside the block only, so registry-wide tests never see it."""
    already = STANDIN in OBJECTIVES
    register_standin()
    try:
        yield
    finally:
        if not already:
            OBJECTIVES._items.pop(STANDIN, None)


def write_data_dir(root: Path, seconds: list[float], seed: int = 0) -> Path:
    """A data dir of noisy tones lasting ``seconds`` each (wav.scp, utt2spk, utt2dur)."""
    rng = np.random.default_rng(seed)
    data = DataDir(utt2dur={})
    for i, duration in enumerate(seconds):
        utt = f"spk{i % 2}-utt{i:02d}"
        samples = round(duration * SAMPLE_RATE)
        t = np.arange(samples) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(samples)
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, wave.astype(np.float32), SAMPLE_RATE)
        data.wav_scp[utt] = str(path)
        data.utt2spk[utt] = f"spk{i % 2}"
        data.utt2dur[utt] = samples / SAMPLE_RATE
    data.save(root / "data")
    return root / "data"


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


#: A tiny run: 2-block AST of width 32 on stacked 32-bin fbank frames, the stand-in objective.
TINY: dict[str, Any] = {
    "data": {
        "sample_rate": SAMPLE_RATE,
        "max_seconds_per_batch": 2.0,
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
            "dim": 32,
            "num_layers": 2,
            "num_heads": 4,
            "input": {"kind": "frame", "frame_stack": 2, "num_bins": 32, "conv_pos_kernel": 8, "conv_pos_groups": 4},
        },
    },
    "objective": {"name": STANDIN, "config": {}},
    "optim": {"lr": 3.0e-3, "warmup_steps": 2, "schedule": "cosine", "grad_clip": 1.0},
    "run": {
        "max_steps": 6,
        "device": "cpu",
        "log_every": 1,
        "checkpoint_every": 2,
        "keep_last": 10,
        "tensorboard": False,
    },
}


def tiny_config(**changes: Any) -> PretrainConfig:
    """:data:`TINY` with nested ``changes`` (``run={"max_steps": 3}``)."""
    return config_from_dict(merge(TINY, changes))


def parameters(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The model weights of checkpoint ``step`` of a run."""
    from audiossl.train.checkpoint import checkpoint_path, load_checkpoint

    return load_checkpoint(checkpoint_path(run_dir, step))["model"]
