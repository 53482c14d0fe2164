"""The wav2vec 2.0 waveform feature extractor: a stack of strided 1-D convolutions.

Baevski et al., "wav2vec 2.0" (NeurIPS 2020), section 2: seven temporal convolutions,
(512 channels, kernel 10, stride 5), four of (512, 3, 2) and two of (512, 2, 2), each
followed by GELU; 400 samples of receptive field and a 320-sample (20 ms) hop at 16 kHz.
Two normalisation modes, as in fairseq and torchaudio:

* ``"group_norm"`` (wav2vec2 base): a GroupNorm with one group per channel after the first
  convolution only. It normalises every channel **over time, padding included**, so a padded
  batch does *not* give each utterance's features as alone (wav2vec2 and HuBERT base share
  this); batch utterances of similar lengths, or use ``"layer_norm"``.
* ``"layer_norm"`` (wav2vec2 large, HuBERT large): a LayerNorm over channels after every
  convolution. Every output frame depends only on its own receptive field, so valid frames
  are independent of the padding.

This front-end has parameters: it is trained with the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from audiossl.audio.base import Frontend, register_frontend
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


def _default_layers() -> list[tuple[int, int, int]]:
    return [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


@dataclass(kw_only=True)
class ConvFeatureConfig:
    """Shape of the waveform CNN."""

    conv_layers: list[tuple[int, int, int]] = field(default_factory=_default_layers)
    """(channels, kernel, stride) of each convolution, first to last."""
    mode: Literal["group_norm", "layer_norm"] = "group_norm"
    """group_norm: GroupNorm after the first conv only (over time; not padding-invariant); layer_norm: LN after each."""
    conv_bias: bool = False
    """Give the convolutions a bias (wav2vec2 base: no; large: yes)."""
    dropout: float = 0.0
    """Dropout after each block."""
    normalize_waveform: bool = False
    """Normalise each utterance to zero mean and unit variance over its valid samples first (wav2vec2 large)."""

    def __post_init__(self) -> None:
        if not self.conv_layers:
            raise ConfigError("conv_layers must not be empty")
        for channels, kernel, stride in self.conv_layers:
            if channels < 1 or kernel < 1 or stride < 1:
                raise ConfigError(f"bad conv layer (channels, kernel, stride) = {(channels, kernel, stride)}")


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Valid outputs of an unpadded 1-D convolution: ``max(0, (n - kernel) // stride + 1)``."""
    return torch.clamp_min(torch.div(lengths - kernel, stride, rounding_mode="floor") + 1, 0)


class _TransposedLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvBlock(nn.Module):
    """Conv1d -> optional norm -> GELU -> dropout, with the length formula next to the conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        bias: bool,
        norm: nn.Module | None,
        dropout: float,
    ):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x)  # (B, C_out, T_out)
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(nn.functional.gelu(x)), conv_output_lengths(lengths, self.kernel, self.stride)


@register_frontend("wav2vec2_cnn", ConvFeatureConfig, learnable=True)
class ConvFeatureExtractor(Frontend):
    """Learnable waveform CNN: ``(waveforms (B, T), lengths) -> (features (B, F, C), frame_lengths)``."""

    def __init__(self, config: ConvFeatureConfig | None = None):
        super().__init__()
        self.config = config or ConvFeatureConfig()
        blocks = []
        in_channels = 1
        for index, (channels, kernel, stride) in enumerate(self.config.conv_layers):
            if self.config.mode == "layer_norm":
                norm = _TransposedLayerNorm(channels)
            elif index == 0:
                norm = nn.GroupNorm(channels, channels)
            else:
                norm = None
            blocks.append(
                ConvBlock(in_channels, channels, kernel, stride, self.config.conv_bias, norm, self.config.dropout)
            )
            in_channels = channels
        self.blocks = nn.ModuleList(blocks)
        self.num_channels = in_channels
        self.frame_shift = 1
        for _, _, stride in self.config.conv_layers:
            self.frame_shift *= stride

    @property
    def receptive_field(self) -> int:
        """Samples that one output frame sees."""
        field_size, jump = 1, 1
        for _, kernel, stride in self.config.conv_layers:
            field_size += (kernel - 1) * jump
            jump *= stride
        return field_size

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if waveforms.dim() != 2 or lengths.shape != waveforms.shape[:1]:
            raise ValueError(f"expected waveforms (B, T) and lengths (B,), got {tuple(waveforms.shape)}")
        lengths = lengths.to(waveforms.device).long()
        if self.config.normalize_waveform:
            waveforms = _normalize_utterances(waveforms, lengths)
        if waveforms.shape[1] < self.receptive_field:  # too short for any frame: no conv can run
            frame_lengths = self.output_lengths(lengths)
            return waveforms.new_zeros(waveforms.shape[0], 0, self.num_channels), frame_lengths
        x = waveforms.unsqueeze(1)  # (B, 1, T)
        for block in self.blocks:
            x, lengths = block(x, lengths)  # (B, C, T_i)
        features = x.transpose(1, 2)  # (B, F, C)
        # Traced (export): the padded input's frame count, so the trace keeps time dynamic.
        max_frames = features.shape[1] if torch.jit.is_tracing() else int(lengths.max()) if lengths.numel() else 0
        padding = ~lengths_to_mask(lengths, max_frames).unsqueeze(-1)  # (B, F, 1)
        features = features[:, :max_frames].masked_fill(padding, 0.0)
        return features, lengths

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.long()
        for _, kernel, stride in self.config.conv_layers:
            lengths = conv_output_lengths(lengths, kernel, stride)
        return lengths


def _normalize_utterances(waveforms: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per item over its valid samples; padding set to zero. (B, T)."""
    valid = lengths_to_mask(lengths, waveforms.shape[1])  # (B, T)
    waveforms = waveforms.masked_fill(~valid, 0.0)
    count = valid.sum(1, keepdim=True).clamp_min(1).to(waveforms.dtype)
    mean = waveforms.sum(1, keepdim=True) / count
    centred = (waveforms - mean).masked_fill_(~valid, 0.0)
    var = centred.square().sum(1, keepdim=True) / count
    return centred / torch.sqrt(var + eps)
