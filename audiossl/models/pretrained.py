"""Load a pretrained encoder with the input pipeline it was trained on, from a checkpoint.

Downstream code (probes, plugins, the embedder) calls :func:`load_pretrained` and gets one
module mapping padded waveforms to :class:`~audiossl.encoders.EncoderOutput`, with the
front-end and normalisation statistics of the pretraining run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from audiossl.config import from_dict
from audiossl.encoders import ENCODERS, Encoder, EncoderOutput, create_encoder
from audiossl.errors import DataError
from audiossl.train.checkpoint import latest_checkpoint, load_checkpoint
from audiossl.train.config import PretrainConfig, frontend_settings
from audiossl.train.inputs import InputPipeline


class PretrainedEncoder(nn.Module):
    """Input pipeline + encoder: ``(waveforms (B, T), lengths (B,)) -> EncoderOutput``."""

    def __init__(self, inputs: InputPipeline, encoder: Encoder, config: PretrainConfig):
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
        per_step = getattr(getattr(self.encoder, "embedding", None), "freq_patches", 1)
        return float(tokens[0]) / per_step / 10.0

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        features, feature_lengths = self.inputs(waveforms, lengths)
        return self.encoder(features, feature_lengths)


def load_pretrained(path: str | Path, *, random_init: bool = False, seed: int = 0) -> PretrainedEncoder:
    """The encoder of a checkpoint (or of a run dir's newest checkpoint), in eval mode on the CPU.

    ``random_init=True`` keeps the architecture and the input pipeline (statistics included) but
    not the trained weights: the encoder is freshly initialised from ``seed`` (a baseline).
    """
    path = Path(path)
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise DataError("no checkpoint (ckpt-*.pt) in this run dir", path)
        path = newest
    state = load_checkpoint(path)
    config = from_dict(PretrainConfig, state["config"])  # the objective need not be importable here
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
