"""Waveforms -> encoder inputs: fixed front-end, normalisation and optional SpecAugment.

:class:`InputPipeline` is the part of a pretrained model that is not trained: it turns a padded
batch of waveforms into what the encoder reads. Its statistics are buffers, so a checkpoint
carries them and a pretrained encoder is used downstream with exactly the inputs it was
trained on (:func:`audiossl.models.load_pretrained`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from audiossl.audio.augment import SpecAugment
from audiossl.audio.frontends import create_frontend
from audiossl.audio.normalize import GlobalStats, cmvn
from audiossl.data.config import DataConfig
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


def normalize_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its valid samples (B, T) -> (B, T); padding stays zero."""
    valid = lengths_to_mask(lengths.to(waveforms.device), waveforms.shape[1])  # (B, T)
    count = valid.sum(dim=1, keepdim=True).clamp_min(1).to(waveforms.dtype)  # (B, 1)
    mean = (waveforms * valid).sum(dim=1, keepdim=True) / count
    centred = (waveforms - mean) * valid
    var = centred.square().sum(dim=1, keepdim=True) / count
    return centred / torch.sqrt(var + eps)


class InputPipeline(nn.Module):
    """``(waveforms (B, T), lengths (B,)) -> (inputs, input lengths)`` for the encoder.

    With a front-end the inputs are features (B, F, C) and frame lengths; with ``frontend: none``
    they are the (normalised) waveforms (B, T) and sample lengths. Runs in float32 without
    gradients: it has nothing to learn. ``stats`` is required for ``normalize: global``.
    """

    def __init__(self, config: DataConfig, frontend_config: Any | None, stats: GlobalStats | None = None):
        super().__init__()

        self.config = config
        self.frontend = None if frontend_config is None else create_frontend(config.frontend, frontend_config)
        if self.frontend is None and config.normalize == "global":
            raise ConfigError("data.normalize: global needs a front-end; use 'utterance' or 'none' for waveforms")
        if self.frontend is None and config.spec_augment is not None:
            raise ConfigError("data.spec_augment needs a front-end (it masks spectrogram features)")
        self.spec_augment = None if config.spec_augment is None else SpecAugment(config.spec_augment)
        if config.normalize == "global":
            channels = self.frontend.num_channels
            self.register_buffer("mean", torch.zeros(channels))
            self.register_buffer("std", torch.ones(channels))
            if stats is not None:
                self.set_stats(stats)

    @property
    def num_channels(self) -> int | None:
        """Feature channels C, or None for waveforms."""
        return None if self.frontend is None else self.frontend.num_channels

    def set_stats(self, stats: GlobalStats, eps: float = 1e-5) -> None:
        """Use ``stats`` for global normalisation (per channel, or the scalar AST statistics)."""
        if stats.num_channels != self.frontend.num_channels:
            raise ConfigError(
                f"global statistics have {stats.num_channels} channels, "
                f"the front-end gives {self.frontend.num_channels}"
            )
        if self.config.scalar_stats:
            mean = torch.full((stats.num_channels,), stats.scalar_mean)
            std = torch.full((stats.num_channels,), stats.scalar_std)
        else:
            mean, std = torch.from_numpy(stats.mean), torch.from_numpy(stats.std)
        self.mean.copy_(mean.float())
        self.std.copy_(std.float().clamp_min(eps))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Input lengths the encoder sees for ``lengths`` samples (B,)."""
        return lengths if self.frontend is None else self.frontend.output_lengths(lengths)

    @torch.no_grad()
    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        features: torch.Tensor | None = None,
        feature_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and their lengths; SpecAugment only in training mode, its masks drawn from ``generator``.

        ``features`` (B, F, C) with ``feature_lengths`` (B,): this front-end's output computed
        elsewhere (by the data loader's workers, ``data.fairseq2_fbank``); the front-end is then
        skipped and only normalisation and SpecAugment are applied. They must be what the front-end
        would give for ``waveforms`` (same channels and frame counts); ``waveforms`` is not read.
        """
        if features is not None:
            if self.frontend is None or feature_lengths is None:
                raise ValueError("precomputed features need a front-end (to normalise like) and feature_lengths")
            if features.shape[-1] != self.frontend.num_channels:
                raise ValueError(
                    f"precomputed features have {features.shape[-1]} channels, "
                    f"the front-end gives {self.frontend.num_channels}"
                )
            return self._finish(features.float(), feature_lengths, generator)
        waveforms = waveforms.float()
        if self.frontend is None:
            if self.config.normalize == "utterance":
                waveforms = normalize_waveforms(waveforms, lengths)
            return waveforms, lengths
        features, frame_lengths = self.frontend(waveforms, lengths)  # (B, F, C), (B,)
        return self._finish(features, frame_lengths, generator)

    def _finish(
        self, features: torch.Tensor, frame_lengths: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise front-end features (B, F, C) and apply SpecAugment in training mode."""
        if self.config.normalize == "global":
            valid = lengths_to_mask(frame_lengths.to(features.device), features.shape[1]).unsqueeze(-1)  # (B, F, 1)
            features = (features - self.mean) / self.std * valid
        elif self.config.normalize == "utterance":
            features = cmvn(features, frame_lengths)
        if self.spec_augment is not None:
            features = self.spec_augment(features, frame_lengths, generator=generator)
        return features, frame_lengths
