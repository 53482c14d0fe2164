"""SpeechT5's modality-specific pre/post-nets around the shared encoder-decoder (Ao et al. 2022).

- :class:`LogMelTarget`: the log-mel frames the speech decoder predicts: magnitude mel
  (Slaney), centred frames, natural log with a floor; with the defaults the log-mel of the vc
  plugin's vocoders at a 10 ms hop (16 kHz, 1024-point FFT, 80 bands), except that centring pads
  with zeros instead of a mirror image (so a padded batch equals each item alone).
- :class:`SpeechDecoderPrenet`: a ReLU MLP over log-mel frames (Tacotron 2's bottleneck, with
  dropout that can stay on at inference), the speaker embedding concatenated, projected to D.
- :class:`SpeechDecoderPostnet`: a linear layer predicting ``reduction`` frames and their stop
  logits per decoder step, then a 5-layer 1-D convolutional residual refiner.
- :class:`TextEncoderPrenet`: the shared text embedding (scaled) plus a scaled sinusoidal code,
  as :class:`~audiossl.encoders.embed.EmbeddedTokens` for the shared encoder's blocks.

Every module here is padding-invariant: convolutions zero padding before they read it and
norms are per position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from audiossl.encoders.embed import EmbeddedTokens
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_padding_mask
from audiossl.nn.positional import sinusoidal_encoding

#: Floor of the mel magnitudes before the log (the vc plugin's).
LOG_FLOOR = 1e-5


@dataclass(kw_only=True)
class MelTargetConfig:
    """The decoder's log-mel target."""

    sample_rate: int = 16000
    """Audio rate (Hz)."""

    n_fft: int = 1024
    """FFT size and window length."""

    hop_length: int = 160
    """Samples per mel frame (10 ms at 16 kHz)."""

    n_mels: int = 80
    """Mel bands."""

    def __post_init__(self) -> None:
        if self.hop_length < 1 or self.n_fft < self.hop_length or self.n_mels < 1:
            raise ConfigError("mel target needs n_fft >= hop_length >= 1 and n_mels >= 1")


class LogMelTarget(nn.Module):
    """Waveforms (B, T) + lengths -> (log-mel (B, F, n_mels), frame lengths (B,) = lengths // hop)."""

    def __init__(self, config: MelTargetConfig):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            power=1.0,
            norm="slaney",
            mel_scale="slaney",
            center=True,
            pad_mode="constant",  # zeros: an item alone reads at its ends what it reads in a padded batch
        )

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Mel frames of waveforms of ``lengths`` samples (B,)."""
        return torch.div(lengths, self.config.hop_length, rounding_mode="floor")

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frame_lengths = self.frames(lengths)
        longest = int(frame_lengths.max())
        spec = self.mel(waveforms.float())[..., :longest]  # (B, n_mels, F)
        mel = spec.clamp_min(LOG_FLOOR).log().transpose(1, 2)  # (B, F, n_mels)
        padding = lengths_to_padding_mask(frame_lengths, longest)
        return mel.masked_fill(padding.unsqueeze(-1), 0.0), frame_lengths


@dataclass(kw_only=True)
class SpeechPrenetConfig:
    """Speech-decoder pre-net and post-net settings."""

    hidden_dim: int = 256
    """Width of the pre-net MLP."""

    num_layers: int = 2
    """Layers of the pre-net MLP."""

    dropout: float = 0.5
    """Pre-net dropout (Tacotron 2: 0.5)."""

    dropout_at_inference: bool = True
    """Keep the pre-net dropout on in eval mode (Tacotron 2 and SpeechT5 do, for varied autoregressive speech)."""

    speaker_dim: int = 64
    """Width of the speaker embedding concatenated to the pre-net output (zeros when none is given)."""

    reduction: int = 2
    """Mel frames predicted per decoder step (reduction factor r)."""

    postnet_layers: int = 5
    """Convolutional layers of the residual refiner."""

    postnet_channels: int = 256
    """Channels of the refiner."""

    postnet_kernel: int = 5
    """Kernel width of the refiner (odd)."""

    def __post_init__(self) -> None:
        if self.reduction < 1 or self.postnet_layers < 1 or self.postnet_kernel % 2 == 0:
            raise ConfigError("speech pre/post-net: reduction >= 1, postnet_layers >= 1, odd postnet_kernel")


class SpeechDecoderPrenet(nn.Module):
    """Log-mel frames (B, U, n_mels) + speaker (B, speaker_dim) or None -> decoder inputs (B, U, D)."""

    def __init__(self, n_mels: int, dim: int, config: SpeechPrenetConfig):
        super().__init__()
        self.config = config
        sizes = [n_mels] + [config.hidden_dim] * config.num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.projection = nn.Linear(config.hidden_dim + config.speaker_dim, dim)

    def forward(self, mels: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        x = mels
        training = self.training or self.config.dropout_at_inference
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.config.dropout, training=training)
        if speaker is None:
            speaker = x.new_zeros(x.shape[0], self.config.speaker_dim)
        speaker = F.normalize(speaker.to(x.dtype), dim=-1).unsqueeze(1).expand(-1, x.shape[1], -1)
        return self.projection(torch.cat([x, speaker], dim=-1))


class _ChannelNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


@dataclass
class MelOutput:
    """What :class:`SpeechDecoderPostnet` returns (time in mel frames, U * reduction).

    ``before``: (B, F, n_mels) the linear prediction; ``after``: (B, F, n_mels) refined;
    ``stop_logits``: (B, F) logit that the utterance ends at this frame.
    """

    before: torch.Tensor
    after: torch.Tensor
    stop_logits: torch.Tensor


class SpeechDecoderPostnet(nn.Module):
    """Decoder states (B, U, D) -> :class:`MelOutput` of U * reduction frames."""

    def __init__(self, dim: int, n_mels: int, config: SpeechPrenetConfig):
        super().__init__()
        self.n_mels, self.reduction = n_mels, config.reduction
        self.frames = nn.Linear(dim, n_mels * config.reduction)
        self.stop = nn.Linear(dim, config.reduction)
        channels = [n_mels] + [config.postnet_channels] * (config.postnet_layers - 1) + [n_mels]
        pad = config.postnet_kernel // 2
        self.convolutions = nn.ModuleList(
            nn.Conv1d(a, b, config.postnet_kernel, padding=pad)
            for a, b in zip(channels[:-1], channels[1:], strict=True)
        )
        self.norms = nn.ModuleList(_ChannelNorm(c) for c in channels[1:])

    def refine(self, mels: torch.Tensor, frame_lengths: torch.Tensor | None) -> torch.Tensor:
        """The residual of the conv refiner over (B, F, n_mels); padding zeroed before every convolution."""
        padding = None if frame_lengths is None else lengths_to_padding_mask(frame_lengths, mels.shape[1])
        x = mels.transpose(1, 2)  # (B, n_mels, F)
        last = len(self.convolutions) - 1
        for index, (conv, norm) in enumerate(zip(self.convolutions, self.norms, strict=True)):
            if padding is not None:
                x = x.masked_fill(padding.unsqueeze(1), 0.0)
            x = norm(conv(x))
            if index < last:
                x = torch.tanh(x)
        return x.transpose(1, 2)

    def forward(self, hidden: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> MelOutput:
        """``hidden`` (B, U, D); ``frame_lengths`` (B,) valid mel frames (None = all)."""
        batch, steps, _ = hidden.shape
        before = self.frames(hidden).view(batch, steps * self.reduction, self.n_mels)  # (B, F, n_mels)
        stop = self.stop(hidden).view(batch, steps * self.reduction)  # (B, F)
        after = before + self.refine(before, frame_lengths)
        return MelOutput(before, after, stop)


def decoder_mel_inputs(mels: torch.Tensor, reduction: int) -> torch.Tensor:
    """Teacher-forcing inputs: (B, F, n_mels) target frames -> (B, ceil(F / r), n_mels).

    Step 0 reads a zero ("go") frame; step ``u`` reads the last frame of group ``u - 1``
    (frame ``u * r - 1``).
    """
    steps = math.ceil(mels.shape[1] / reduction)
    last = mels[:, reduction - 1 :: reduction][:, : steps - 1]  # (B, steps - 1, n_mels)
    go = mels.new_zeros(mels.shape[0], 1, mels.shape[2])
    return torch.cat([go, last], dim=1)


class TextEncoderPrenet(nn.Module):
    """Token ids (B, S) + lengths -> :class:`EmbeddedTokens` (embedding * sqrt(D) + scaled sinusoidal positions)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.position_scale = nn.Parameter(torch.ones(()))

    def forward(self, embedding: nn.Embedding, tokens: torch.Tensor, lengths: torch.Tensor) -> EmbeddedTokens:
        padding = lengths_to_padding_mask(lengths, tokens.shape[1])
        x = embedding(tokens) * math.sqrt(self.dim)
        code = sinusoidal_encoding(torch.arange(tokens.shape[1], device=tokens.device), self.dim).to(x.dtype)
        x = (x + self.position_scale * code).masked_fill(padding.unsqueeze(-1), 0.0)
        return EmbeddedTokens(x, lengths, padding, 1)
