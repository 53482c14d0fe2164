"""Tiny encoder configs for tests and plugin authors: every family, every input kind, fast on CPU.

``tiny_encoder_config(family, input_kind)`` gives a config small enough for a unit test (two
blocks, width 32) so that a suite parameterised over :data:`~audiossl.encoders.ENCODERS` can
run every family with every input kind in seconds. A family that registers no shrinker here
falls back to its ``tiny`` preset with the tiny input, so a new encoder is still tested.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from audiossl.audio.tokens import PatchConfig
from audiossl.encoders import ENCODERS
from audiossl.encoders.embed import InputConfig

#: Input kinds every encoder accepts.
INPUT_KINDS = ("patch", "frame", "waveform")

#: Width of the tiny test encoders.
TINY_DIM = 32

#: Mel bins of the tiny spectrogram inputs.
TINY_BINS = 32


def tiny_input_config(kind: str) -> InputConfig:
    """A small :class:`InputConfig` of ``kind``: 8 x 8 patches of 32 bins, pairs of frames, or a slim CNN."""
    common: dict[str, Any] = {"num_bins": TINY_BINS, "conv_pos_kernel": 8, "conv_pos_groups": 4}
    if kind == "patch":
        return InputConfig(kind="patch", patch=PatchConfig(patch_time=4, patch_freq=8), **common)
    if kind == "frame":
        return InputConfig(kind="frame", frame_stack=2, **common)
    if kind == "waveform":
        return InputConfig(kind="waveform", frontend="wav2vec2_cnn", frontend_options=TINY_CNN_OPTIONS, **common)
    raise ValueError(f"unknown input kind {kind!r}; known: {', '.join(INPUT_KINDS)}")


#: A slim wav2vec2-style CNN (32 channels, 40-sample hop, 60-sample receptive field,
#: padding-invariant layer norm) for waveform tests.
TINY_CNN_OPTIONS: dict[str, Any] = {
    "conv_layers": [(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)],
    "mode": "layer_norm",
}


def _tiny_ast(config: Any) -> Any:
    return dataclasses.replace(config, dim=TINY_DIM, num_layers=2, num_heads=4)


def _tiny_conformer(config: Any) -> Any:
    return dataclasses.replace(config, dim=TINY_DIM, num_layers=2, num_heads=4, ffn_dim=64, conv_kernel=5)


def _tiny_mamba(config: Any) -> Any:
    return dataclasses.replace(config, dim=TINY_DIM, num_layers=2, d_state=4, chunk_size=8)


#: Family name -> function shrinking that family's ``tiny`` preset further for tests.
#: Families add their own entry; without one, the ``tiny`` preset is used as is.
SHRINKERS: dict[str, Callable[[Any], Any]] = {
    "ast": _tiny_ast,
    "conformer": _tiny_conformer,
    "mamba": _tiny_mamba,
    "speecht5": lambda config: dataclasses.replace(config, dim=TINY_DIM, num_layers=2, num_heads=4, ffn_dim=64),
    "wav2vec2": lambda config: dataclasses.replace(config, dim=TINY_DIM, num_layers=2, num_heads=4, ffn_dim=64),
}


def tiny_encoder_config(family: str, input_kind: str) -> Any:
    """The config of a tiny ``family`` encoder reading ``input_kind`` tokens (see module doc)."""
    spec = ENCODERS.get(family)
    config = spec.presets["tiny"]()
    shrink = SHRINKERS.get(family)
    if shrink is not None:
        config = shrink(config)
    return dataclasses.replace(config, input=tiny_input_config(input_kind))


def encoder_cases() -> list[tuple[str, str]]:
    """Every registered (family, input kind) pair, for parameterised tests."""
    return [(family, kind) for family in ENCODERS.names() for kind in INPUT_KINDS]


def dummy_encoder_inputs(
    input_config: InputConfig, lengths: list[int], seed: int = 0, padding_value: float = 100.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random padded inputs for an encoder reading ``input_config``: (B, F, C) or (B, T), and lengths (B,).

    ``lengths`` are frames (samples for waveforms). Padding holds ``padding_value`` rather
    than zeros, so a test notices when padding reaches valid outputs.
    """
    generator = torch.Generator().manual_seed(seed)
    lengths_tensor = torch.tensor(lengths)
    longest = max(lengths)
    valid = torch.arange(longest).unsqueeze(0) < lengths_tensor.unsqueeze(1)  # (B, T)
    if input_config.kind == "waveform":
        x = torch.randn(len(lengths), longest, generator=generator)  # (B, T)
    else:
        x = torch.randn(len(lengths), longest, input_config.num_bins, generator=generator)  # (B, F, C)
        valid = valid.unsqueeze(-1)
    return x.masked_fill(~valid, padding_value), lengths_tensor
