"""Where a pretraining config's objective masks one utterance, as spectrogram cells to draw.

``audiossl features plot --config CFG`` shows a spectrogram with the mask the objective would
draw on it: the objective is built from the config (random weights: only its mask sampler is
used), its ``sample_mask`` draws over the encoder's tokens, and every masked token is mapped
back to the frames (and, for patches, the channels) it reads. Objectives without a token
mask (e.g. ``dino``) give None.
"""

from __future__ import annotations

import torch

from audiossl.audio.tokens import patch_counts
from audiossl.encoders import create_encoder
from audiossl.errors import ConfigError
from audiossl.objectives import create_objective
from audiossl.train.config import PretrainConfig, encoder_config, objective_config


def mask_cells(
    config: PretrainConfig, features: torch.Tensor, seed: int = 0, num_samples: int | None = None
) -> torch.Tensor | None:
    """(F, C) bool: the cells of ``features`` (F, C) under masked tokens, or None if the objective has no mask.

    Waveform encoders count tokens from ``num_samples`` (the utterance's samples), spread over the frames.
    """
    settings = encoder_config(config)
    torch.manual_seed(seed)
    encoder = create_encoder(config.encoder.family, config=settings)
    objective = create_objective(config.objective.name, encoder, objective_config(config))
    if not objective.has_token_mask:
        return None
    frames, channels = features.shape
    if settings.input.kind == "waveform":
        if num_samples is None:
            raise ConfigError("a waveform encoder's mask needs the utterance's number of samples")
        token_lengths = encoder.token_lengths(torch.tensor([num_samples]))  # (1,)
    else:
        token_lengths = encoder.token_lengths(torch.tensor([frames]))  # (1,)
    tokens = int(token_lengths[0])
    if tokens < 1:
        raise ConfigError(f"an utterance of {frames} frames gives no {settings.input.kind} token to mask")
    mask = objective.sample_mask(token_lengths, tokens, torch.Generator().manual_seed(seed))[0]  # (S,)
    cells = torch.zeros(frames, channels, dtype=torch.bool)
    inputs = settings.input
    if inputs.kind == "patch":
        _, width = patch_counts(torch.tensor([frames]), channels, inputs.patch)
        patch = inputs.patch
        for s in mask.nonzero().flatten().tolist():
            t, f = divmod(s, width)
            t0, f0 = t * patch.time_stride, f * patch.freq_stride
            cells[t0 : t0 + patch.patch_time, f0 : f0 + patch.patch_freq] = True
    else:  # frame tokens read frame_stack frames; waveform tokens are spread evenly over the frames
        span = inputs.frame_stack if inputs.kind == "frame" else frames / tokens
        for s in mask.nonzero().flatten().tolist():
            cells[round(s * span) : round((s + 1) * span)] = True
    return cells
