"""Load a pretrained encoder with the input pipeline it was trained on, from a checkpoint.

Downstream code (probes, plugins, the embedder) calls :func:`load_pretrained` and gets one
:class:`~audiossl.models.SpeechEncoder` mapping padded waveforms to
:class:`~audiossl.encoders.EncoderOutput`, with the front-end and normalisation statistics of
the pretraining run. Only the entries a model needs are read from the checkpoint (never the
optimizer state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from audiossl.config import from_dict
from audiossl.encoders import ENCODERS, Encoder, EncoderOutput, create_encoder
from audiossl.errors import DataError
from audiossl.models.checkpoint import read_checkpoint, resolve_checkpoint
from audiossl.models.config import ModelConfig, frontend_settings, model_config_from_dict
from audiossl.models.inputs import InputPipeline
from audiossl.models.protocol import SpeechEncoder

#: Top-level checkpoint entries a pretrained encoder is rebuilt from.
MODEL_ENTRIES = ("config", "encoder", "model", "inputs")


class PretrainedEncoder(SpeechEncoder):
    """Input pipeline + encoder: ``(waveforms (B, T), lengths (B,)) -> EncoderOutput``.

    ``config`` holds the sections the bundle was rebuilt from (``data``, ``encoder``).
    """

    def __init__(self, inputs: InputPipeline, encoder: Encoder, config: ModelConfig):
        super().__init__()
        self.inputs = inputs
        self.encoder = encoder
        self.config = config

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) the waveforms must have."""
        return self.config.data.sample_rate

    @property
    def dim(self) -> int:
        """Width D of the hidden states."""
        return self.encoder.dim

    @property
    def num_layers(self) -> int:
        """Blocks L of the encoder (``len(EncoderOutput.layers)``)."""
        return self.encoder.num_layers

    @property
    def frame_rate(self) -> float:
        """Output time steps per second of audio (prefix tokens excluded), measured on 10 s of input.

        For patch inputs a time step is one column of the patch grid (``freq_patches`` tokens).
        """
        samples = torch.tensor([10 * self.sample_rate])
        tokens = self.encoder.token_lengths(self.inputs.output_lengths(samples))
        return float(tokens[0]) / self.encoder.freq_patches / 10.0

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        features, feature_lengths = self.inputs(waveforms, lengths)
        return self.encoder(features, feature_lengths)


def read_model_state(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(checkpoint file, its model entries) for a checkpoint or a run dir: one read, no optimizer state."""
    source = resolve_checkpoint(path)
    return source, read_checkpoint(source, keys=MODEL_ENTRIES)


def pretrained_from_state(state: dict[str, Any], *, random_init: bool = False, seed: int = 0) -> PretrainedEncoder:
    """The encoder bundle of checkpoint entries (:data:`MODEL_ENTRIES`), in eval mode on the CPU."""
    config = model_config_from_dict(state["config"])  # the objective need not be importable here
    family = state["encoder"]["family"]
    settings = from_dict(ENCODERS.get(family).config_class, state["encoder"]["config"])
    torch.manual_seed(seed)
    encoder = create_encoder(family, config=settings)
    if not random_init:
        prefix = "encoder."
        weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
        encoder.load_state_dict(weights)
    inputs = InputPipeline(config.data, frontend_settings(config))
    inputs.load_state_dict(state["inputs"])
    return PretrainedEncoder(inputs, encoder, config).eval()


def load_pretrained(path: str | Path, *, random_init: bool = False, seed: int = 0) -> PretrainedEncoder:
    """The encoder of a checkpoint (or of a run dir's newest checkpoint), in eval mode on the CPU.

    ``random_init=True`` keeps the architecture and the input pipeline (statistics included) but
    not the trained weights: the encoder is freshly initialised from ``seed`` (a baseline).
    """
    source, state = read_model_state(path)
    missing = [key for key in MODEL_ENTRIES if key not in state]
    if missing:
        raise DataError(f"audiossl checkpoint lacks the entries {missing}", source)
    return pretrained_from_state(state, random_init=random_init, seed=seed)
