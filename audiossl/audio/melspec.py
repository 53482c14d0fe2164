"""librosa-compatible log-mel spectrograms on padded batches.

``log_mel`` computes, for every item of a batch at once, what
``librosa.power_to_db(librosa.feature.melspectrogram(y=..., sr=..., n_fft=..., hop_length=...,
win_length=..., n_mels=..., center=True, power=2.0))`` computes for one utterance: a centred
STFT with a periodic Hann window (zero-padded to ``n_fft`` when shorter), the power
spectrum, librosa's Slaney mel filters, then decibels with ``amin`` and ``top_db`` clipping.

Two per-utterance details keep the batch padding-invariant:

* with ``center``, the end of each utterance is padded from its own samples (zeros for
  ``pad_mode="constant"``, a mirror image of its own last samples for ``"reflect"``),
  never from the batch padding;
* ``top_db`` clips at ``peak - top_db`` where the peak is each utterance's own maximum over
  its valid frames (librosa clips per call, i.e. per utterance).

An empty utterance gives zero frames (librosa refuses empty input).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch

from audiossl.audio.base import Frontend, register_frontend
from audiossl.audio.framing import banded_blocks, flat_frames, map_frames, power_spectrum, project
from audiossl.audio.kaldi_fbank import check_batch
from audiossl.audio.options import resolve_config
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


@dataclass(kw_only=True)
class LogMelConfig:
    """Options of ``librosa.feature.melspectrogram`` followed by ``librosa.power_to_db``."""

    sample_rate: int = 16000
    """Sample rate of the input waveforms in Hz."""
    n_fft: int = 512
    """FFT size in samples."""
    hop_length: int = 160
    """Hop between frames in samples."""
    win_length: int | None = 400
    """Window length in samples (centred inside n_fft); None means n_fft."""
    n_mels: int = 128
    """Number of mel filters."""
    f_min: float = 0.0
    """Lowest mel filter edge in Hz."""
    f_max: float | None = None
    """Highest mel filter edge in Hz; None means sample_rate / 2."""
    htk: bool = False
    """HTK mel scale instead of Slaney's."""
    norm: Literal["slaney"] | None = "slaney"
    """Filter normalisation: "slaney" (area one, librosa's default) or None (peak one)."""
    center: bool = True
    """Centre frame t on sample t * hop_length by padding n_fft // 2 samples at both ends."""
    pad_mode: Literal["constant", "reflect"] = "constant"
    """How centring pads: zeros (librosa's default) or a mirror image without the edge sample."""
    power: float = 2.0
    """Exponent of the magnitude spectrum (2: power, 1: magnitude)."""
    to_db: bool = True
    """Convert to decibels with power_to_db; False returns the linear mel spectrogram."""
    ref: float = 1.0
    """Reference power of 0 dB."""
    amin: float = 1e-10
    """Floor on the power before the log."""
    top_db: float | None = 80.0
    """Clip each utterance at its own peak minus top_db decibels; None disables clipping."""

    def __post_init__(self) -> None:
        window = self.n_fft if self.win_length is None else self.win_length
        if self.n_fft < 2 or self.hop_length < 1 or not 1 <= window <= self.n_fft:
            raise ConfigError(f"need n_fft >= 2, hop_length >= 1, 1 <= win_length <= n_fft; got {self}")
        if self.top_db is not None and self.top_db < 0:
            raise ConfigError(f"top_db must be non-negative, got {self.top_db}")


def log_mel_num_frames(lengths: torch.Tensor, n_fft: int, hop_length: int, center: bool) -> torch.Tensor:
    """librosa's frame count (B,) for ``lengths`` samples (B,); 0 for an empty utterance.

    Centred: ``1 + (n + 2 (n_fft // 2) - n_fft) // hop`` (``1 + n // hop`` for even n_fft);
    otherwise ``1 + (n - n_fft) // hop`` when ``n >= n_fft``.
    """
    lengths = lengths.long()
    padded = lengths + 2 * (n_fft // 2) if center else lengths
    count = torch.where(padded >= n_fft, (padded - n_fft) // hop_length + 1, 0)
    return torch.where(lengths > 0, count, 0)


@functools.lru_cache(maxsize=16)
def _constants(
    config_key: tuple, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, torch.Tensor]]]:
    """Window zero-padded to n_fft (n_fft,), librosa's mel matrix (n_fft/2+1, n_mels) and its banded blocks."""
    import librosa

    sample_rate, n_fft, win_length, n_mels, f_min, f_max, htk, norm = config_key
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    left = (n_fft - win_length) // 2
    window = torch.nn.functional.pad(window, (left, n_fft - win_length - left))  # librosa's pad_center
    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=htk, norm=norm)
    mel = torch.from_numpy(basis).T.contiguous().to(device=device, dtype=dtype)  # (n_fft/2 + 1, n_mels)
    return window.to(device=device, dtype=dtype), mel, banded_blocks(mel)


def _numpy_reflect(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``numpy.pad(mode="reflect")`` index map (mirror without repeating the edge), repeated as needed."""
    period = (2 * (lengths - 1)).clamp_min(1)
    folded = torch.remainder(positions, period)
    return torch.where(folded >= lengths, period - folded, folded).clamp_min(0)


def _padded_signals(waveforms: torch.Tensor, lengths: torch.Tensor, config: LogMelConfig) -> torch.Tensor:
    """(B, W): each item's valid samples after ``n_fft // 2`` samples of padding (when centred), padded
    at both of its own ends as librosa pads it, zeros beyond; W is a multiple of the hop."""
    batch, samples = waveforms.shape
    pad = config.n_fft // 2 if config.center else 0
    width = math.ceil(max(samples + 2 * pad, config.n_fft) / config.hop_length) * config.hop_length
    n = lengths.long().to(waveforms.device).unsqueeze(1)  # (B, 1)
    buffer = waveforms.new_zeros(batch, width)  # (B, W)
    valid = lengths_to_mask(n.squeeze(1), samples)  # (B, T)
    signal = buffer[:, pad : pad + samples]  # (B, T) view
    signal.copy_(waveforms)
    signal.masked_fill_(~valid, 0.0)  # the batch padding never enters a frame
    if pad and config.pad_mode == "reflect":
        before = torch.arange(-pad, 0, device=waveforms.device).expand(batch, pad)  # (B, pad)
        buffer[:, :pad] = waveforms.gather(1, _numpy_reflect(before, n)) * (n > 0)
        after = n + torch.arange(pad, device=waveforms.device)  # (B, pad): the samples past each end
        buffer.scatter_(1, after + pad, waveforms.gather(1, _numpy_reflect(after, n)) * (n > 0))
    return buffer


@torch.no_grad()
def log_mel(
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    config: LogMelConfig | None = None,
    **options: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """librosa log-mel spectrogram in dB of a padded batch.

    ``(waveforms (B, T), lengths (B,)) -> (features (B, F, n_mels), frame_lengths (B,))``.
    Options are the fields of :class:`LogMelConfig` (``sample_rate=16000, n_fft=512,
    hop_length=160, win_length=400, n_mels=128, center=True, pad_mode="constant", power=2.0,
    top_db=80.0, ...``). Padding frames are zero. Frames are processed like :func:`fbank`'s
    (:mod:`audiossl.audio.framing`: all items at once, in cache-sized chunks on CPU), and like
    it carry no gradient.
    """
    config = resolve_config(LogMelConfig, config, options)
    check_batch(waveforms, lengths)
    frame_lengths = log_mel_num_frames(lengths.to(waveforms.device), config.n_fft, config.hop_length, config.center)
    if frame_lengths.numel() == 0 or int(frame_lengths.max()) == 0:
        return waveforms.new_zeros(waveforms.shape[0], 0, config.n_mels), frame_lengths
    win_length = config.n_fft if config.win_length is None else config.win_length
    key = (config.sample_rate, config.n_fft, win_length, config.n_mels, config.f_min, config.f_max, config.htk)
    window, mel_matrix, blocks = _constants((*key, config.norm), waveforms.device, waveforms.dtype)
    frames, rows_per_item = flat_frames(_padded_signals(waveforms, lengths, config), config.n_fft, config.hop_length)
    db_offset = 10.0 * math.log10(max(config.amin, config.ref))

    def compute(rows: torch.Tensor, out: torch.Tensor, work: torch.Tensor) -> None:
        torch.mul(rows, window, out=work)  # (n, n_fft) windowed frames
        spectrum = torch.fft.rfft(work)  # (n, n_fft/2 + 1)
        if config.power == 2.0:
            power = power_spectrum(spectrum)
        else:
            power = spectrum.abs().pow_(config.power)
        project(power, mel_matrix, blocks, out)  # (n, n_mels)
        if config.to_db:
            out.clamp_min_(config.amin).log10_().mul_(10.0).sub_(db_offset)

    features = map_frames(frames, rows_per_item, frame_lengths, config.n_mels, compute, config.n_fft)  # (B, F, M)
    if config.to_db and config.top_db is not None:
        valid = lengths_to_mask(frame_lengths, features.shape[1])  # (B, F)
        peaks = features.amax(dim=2).masked_fill(~valid, -math.inf).amax(dim=1)  # (B,): per utterance
        features.clamp_(min=(peaks - config.top_db).view(-1, 1, 1))
        features.masked_fill_(~valid.unsqueeze(-1), 0.0)
    return features, frame_lengths


@register_frontend("log_mel", LogMelConfig)
class LogMel(Frontend):
    """librosa log-mel front-end (no parameters)."""

    def __init__(self, config: LogMelConfig | None = None):
        super().__init__()
        self.config = config or LogMelConfig()
        self.num_channels = self.config.n_mels
        self.frame_shift = self.config.hop_length

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return log_mel(waveforms, lengths, self.config)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return log_mel_num_frames(lengths, self.config.n_fft, self.config.hop_length, self.config.center)
