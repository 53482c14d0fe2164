"""Kaldi-compatible log-mel filterbanks (``compute-fbank-feats``) on whole padded batches.

These are the input features of AST and SSAST. Per utterance the output matches
``torchaudio.compliance.kaldi.fbank`` with the same options (dither 0) to about 1e-5, but
the batch is computed in one pass over all valid frames of all items instead of one call
per utterance:

* frames of every item are strided views of one flat buffer (no per-utterance loop);
* Kaldi's per-frame DC removal, pre-emphasis and window are applied straight from the
  strided view into a reused, zero-tailed FFT buffer, with the same operations in the same
  order as torchaudio, so the windowed frames are bit-identical (the weakest mel bins are
  decided by FFT rounding: a reordered, algebraically equal formula drifts by up to 2e-3);
* power is ``re^2 + im^2`` (no square root), and the mel matrix, which is banded, is
  applied as a few dense blocks over the FFT bins each group of filters actually covers;
* on CPU the frames are processed in cache-sized chunks of the flattened (item, frame) grid
  (:mod:`audiossl.audio.framing`); long items are split, short ones packed together.

Frame counts follow Kaldi: with ``snip_edges`` an utterance shorter than one frame gives
zero frames (not an error); without it, frames are centred on multiples of the shift and
the signal is reflected at both ends of each utterance's own valid samples (repeatedly,
as Kaldi does, for utterances shorter than half a frame).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch

from audiossl.audio.base import Frontend, register_frontend
from audiossl.audio.framing import banded_blocks, flat_frames, map_frames, power_spectrum, project
from audiossl.audio.options import resolve_config
from audiossl.errors import ConfigError

#: Kaldi's floor before the log: std::numeric_limits<float>::epsilon().
EPSILON = float(torch.finfo(torch.float32).eps)

WindowType = Literal["povey", "hamming", "hanning", "rectangular", "blackman"]


@dataclass(kw_only=True)
class FbankConfig:
    """Options of Kaldi's ``compute-fbank-feats`` (names as in the AST/SSAST recipes)."""

    sample_rate: int = 16000
    """Sample rate of the input waveforms in Hz."""
    num_mel_bins: int = 128
    """Number of triangular mel filters (AST and SSAST use 128)."""
    frame_length_ms: float = 25.0
    """Frame (window) length in milliseconds."""
    frame_shift_ms: float = 10.0
    """Hop between frame starts in milliseconds."""
    preemphasis: float = 0.97
    """Pre-emphasis coefficient c in y[j] = x[j] - c * x[j - 1] (per frame, as Kaldi does)."""
    remove_dc_offset: bool = True
    """Subtract each frame's mean before pre-emphasis."""
    window: WindowType = "povey"
    """Window function: povey (Kaldi's default), hamming, hanning, rectangular or blackman."""
    blackman_coeff: float = 0.42
    """Constant of the generalised Blackman window."""
    snip_edges: bool = True
    """Only frames that fit entirely in the signal; otherwise frames are centred and the ends reflected."""
    dither: float = 0.0
    """Standard deviation of Gaussian noise added to every frame sample (0 = off, deterministic)."""
    low_freq: float = 20.0
    """Lowest mel filter edge in Hz."""
    high_freq: float = 0.0
    """Highest mel filter edge in Hz; <= 0 means an offset from the Nyquist frequency."""
    use_energy: bool = False
    """Add the log frame energy as an extra channel (first, or last with htk_compat)."""
    raw_energy: bool = True
    """Energy before pre-emphasis and windowing (Kaldi's default); otherwise after."""
    energy_floor: float = 0.0
    """Floor on the energy channel (absolute, not log); 0 means no floor."""
    htk_compat: bool = False
    """Put the energy channel last instead of first."""
    use_log_fbank: bool = True
    """Log of the mel energies (floored at float epsilon); False gives linear mel energies."""
    use_power: bool = True
    """Mel filters over the power spectrum; False uses the magnitude."""
    round_to_power_of_two: bool = True
    """Zero-pad each frame to the next power of two before the FFT."""

    def __post_init__(self) -> None:
        if self.window not in ("povey", "hamming", "hanning", "rectangular", "blackman"):
            raise ConfigError(f"unknown window {self.window!r}")
        if not 0.0 <= self.preemphasis <= 1.0:
            raise ConfigError(f"preemphasis must be in [0, 1], got {self.preemphasis}")
        if self.num_mel_bins <= 3:
            raise ConfigError(f"num_mel_bins must be > 3, got {self.num_mel_bins}")
        length, shift, n_fft = frame_geometry(self)
        if length < 2 or shift < 1:
            raise ConfigError(f"frame length {length} and shift {shift} (samples) must be >= 2 and >= 1")
        if n_fft % 2:
            raise ConfigError(f"FFT size {n_fft} must be even: use round_to_power_of_two or change frame_length_ms")


def frame_geometry(config: FbankConfig) -> tuple[int, int, int]:
    """(frame length, frame shift, FFT size) in samples, truncated exactly as Kaldi does."""
    length = int(config.sample_rate * config.frame_length_ms * 0.001)
    shift = int(config.sample_rate * config.frame_shift_ms * 0.001)
    n_fft = 1 if length <= 0 else 2 ** (length - 1).bit_length() if config.round_to_power_of_two else length
    return length, shift, n_fft


def kaldi_num_frames(lengths: torch.Tensor, frame_length: int, frame_shift: int, snip_edges: bool) -> torch.Tensor:
    """Kaldi's frame count (B,) for ``lengths`` samples (B,).

    ``snip_edges``: ``1 + (n - frame_length) // frame_shift`` for ``n >= frame_length``, else 0.
    Otherwise ``(n + frame_shift // 2) // frame_shift`` (0 for an empty signal).
    """
    lengths = lengths.long()
    if snip_edges:
        return torch.where(lengths >= frame_length, (lengths - frame_length) // frame_shift + 1, 0)
    return (lengths + frame_shift // 2) // frame_shift


def feature_window(
    window: str, length: int, blackman_coeff: float = 0.42, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Kaldi's symmetric analysis windows (length,), computed in ``dtype`` the way torchaudio does.

    Computing them with the same torch functions (rather than in float64) keeps the windowed
    frames bit-identical to ``torchaudio.compliance.kaldi``; the weakest mel bins depend on it.
    """
    if window == "rectangular":
        return torch.ones(length, dtype=dtype)
    if window == "hamming":
        return torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46, dtype=dtype)
    if window == "blackman":
        a = 2 * math.pi / (length - 1)
        j = torch.arange(length, dtype=dtype)
        return blackman_coeff - 0.5 * torch.cos(a * j) + (0.5 - blackman_coeff) * torch.cos(2 * a * j)
    hann = torch.hann_window(length, periodic=False, dtype=dtype)
    return hann.pow(0.85) if window == "povey" else hann


def reflect_index(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Kaldi's end reflection: -1 -> 0, n -> n - 1, repeated for positions far outside [0, n)."""
    period = 2 * lengths.clamp_min(1)
    folded = torch.remainder(positions, period)
    return torch.where(folded >= period // 2, period - 1 - folded, folded)


def _constants(
    config: FbankConfig, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, torch.Tensor]]]:
    """Window (N,), mel matrix (n_fft/2 + 1, M) and its banded blocks."""
    length, _, n_fft = frame_geometry(config)
    key = (config.window, config.blackman_coeff, length, n_fft, config.num_mel_bins, config.sample_rate)
    return _cached_constants(*key, config.low_freq, config.high_freq, device, dtype)


@functools.lru_cache(maxsize=32)
def _cached_constants(
    window_type: str,
    blackman_coeff: float,
    length: int,
    n_fft: int,
    num_mel_bins: int,
    sample_rate: int,
    low_freq: float,
    high_freq: float,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, torch.Tensor]]]:
    from torchaudio.compliance.kaldi import get_mel_banks

    window = feature_window(window_type, length, blackman_coeff, dtype).to(device)
    banks, _ = get_mel_banks(
        num_mel_bins, n_fft, float(sample_rate), low_freq, high_freq, 100.0, -500.0, 1.0
    )  # (M, n_fft/2): Kaldi ignores the Nyquist bin
    mel = torch.nn.functional.pad(banks, (0, 1)).T.contiguous().to(device=device, dtype=dtype)  # (n_fft/2 + 1, M)
    return window, mel, banded_blocks(mel)


def _frame_source(
    waveforms: torch.Tensor, lengths: torch.Tensor, frame_length: int, frame_shift: int, snip_edges: bool
) -> tuple[torch.Tensor, int]:
    """All frames of the batch as one strided view (R, N), and the rows per item (see :func:`flat_frames`)."""
    if snip_edges:
        return flat_frames(waveforms, frame_length, frame_shift)
    # Centred frames: frame f covers [f * shift - pad, f * shift - pad + N) of its utterance,
    # reflected at the utterance's own ends.
    batch, samples = waveforms.shape
    pad = frame_length // 2 - frame_shift // 2
    left, right = max(pad, 0), frame_length + frame_shift
    buffer = waveforms.new_zeros(batch, left + samples + right)  # (B, W)
    buffer[:, left : left + samples] = waveforms
    n = lengths.long().to(waveforms.device).unsqueeze(1)  # (B, 1)
    if left:
        positions = torch.arange(-left, 0, device=waveforms.device).expand(batch, left)  # (B, left)
        buffer[:, :left] = waveforms.gather(1, reflect_index(positions, n))
    positions = n + torch.arange(right, device=waveforms.device)  # (B, right): the samples after each end
    buffer.scatter_(1, positions + left, waveforms.gather(1, reflect_index(positions, n)))
    return flat_frames(buffer, frame_length, frame_shift, offset=left - pad)


def _fbank_rows(
    frames: torch.Tensor,
    out: torch.Tensor,
    work: torch.Tensor,
    config: FbankConfig,
    constants: tuple,
    generator: torch.Generator | None,
) -> None:
    """Write the features (n, C) of ``frames`` (n, N) into ``out``; ``work`` (n, n_fft) has zero columns >= N."""
    window, mel_matrix, blocks = constants
    length = frames.shape[1]
    c = config.preemphasis
    if config.dither != 0.0:
        noise = torch.randn(frames.shape, generator=generator, device=frames.device, dtype=frames.dtype)
        frames = frames + config.dither * noise
    mean = frames.mean(1, keepdim=True) if config.remove_dc_offset else None  # (n, 1)
    energy = None
    if config.use_energy and config.raw_energy:
        energy = (frames if mean is None else frames - mean).square().sum(1)  # (n,)
    frame = work[:, :length]  # (n, N) view of the FFT buffer
    if mean is not None:
        torch.sub(frames, mean, out=frame)
    else:
        frame.copy_(frames)
    if c != 0.0:
        shifted = frame[:, :-1] * c  # (n, N - 1): c * y[j - 1]
        frame[:, 1:] -= shifted
        frame[:, 0] -= shifted[:, 0]  # y[0] - c * y[0]: Kaldi repeats the first sample
    frame.mul_(window)
    if config.use_energy and not config.raw_energy:
        energy = frame.square().sum(1)
    spectrum = torch.fft.rfft(work)  # (n, n_fft/2 + 1) complex
    power = power_spectrum(spectrum) if config.use_power else spectrum.abs()  # (n, n_fft/2 + 1)
    mel_out = out if energy is None else (out[:, :-1] if config.htk_compat else out[:, 1:])  # (n, M)
    project(power, mel_matrix, blocks, mel_out)
    if config.use_log_fbank:
        mel_out.clamp_min_(EPSILON).log_()
    if energy is not None:
        energy = energy.clamp_min(EPSILON).log()
        if config.energy_floor > 0.0:
            energy = energy.clamp_min(math.log(config.energy_floor))
        out[:, -1 if config.htk_compat else 0] = energy


@torch.no_grad()
def fbank(
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    config: FbankConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    **options: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi log-mel filterbanks of a padded batch.

    ``waveforms`` (B, T) float, ``lengths`` (B,) valid samples. Options are the fields of
    :class:`FbankConfig` (``sample_rate=16000, num_mel_bins=128, frame_length_ms=25.0,
    frame_shift_ms=10.0, preemphasis=0.97, remove_dc_offset=True, window="povey",
    snip_edges=True, dither=0.0, low_freq=20.0, high_freq=0.0, use_energy=False,
    use_log_fbank=True, energy_floor=0.0, round_to_power_of_two=True, ...``), given as keywords
    or as ``config``. Returns features (B, F, C) with F = max frame count, zero past each
    item's ``frame_lengths`` (B,). ``generator`` drives the dither noise. Not differentiable:
    the features carry no gradient (they are computed in place, under ``no_grad``).
    """
    config = resolve_config(FbankConfig, config, options)
    check_batch(waveforms, lengths)
    length, shift, n_fft = frame_geometry(config)
    frame_lengths = kaldi_num_frames(lengths.to(waveforms.device), length, shift, config.snip_edges)  # (B,)
    channels = config.num_mel_bins + int(config.use_energy)
    if frame_lengths.numel() == 0 or int(frame_lengths.max()) == 0:
        return waveforms.new_zeros(waveforms.shape[0], 0, channels), frame_lengths
    frames, rows_per_item = _frame_source(waveforms, lengths, length, shift, config.snip_edges)  # (R, N)
    constants = _constants(config, waveforms.device, waveforms.dtype)

    def compute(rows: torch.Tensor, out: torch.Tensor, work: torch.Tensor) -> None:
        _fbank_rows(rows, out, work, config, constants, generator)

    return map_frames(frames, rows_per_item, frame_lengths, channels, compute, n_fft), frame_lengths


def check_batch(waveforms: torch.Tensor, lengths: torch.Tensor) -> None:
    """Shapes (B, T) and (B,), floating-point samples, 0 <= lengths <= T; else ValueError."""
    if waveforms.dim() != 2 or lengths.shape != waveforms.shape[:1]:
        shapes = f"{tuple(waveforms.shape)} and {tuple(lengths.shape)}"
        raise ValueError(f"expected waveforms (B, T) and lengths (B,), got {shapes}")
    if not waveforms.is_floating_point():
        raise ValueError(f"waveforms must be floating point, got {waveforms.dtype}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > waveforms.shape[1]):
        raise ValueError(f"lengths must lie in [0, {waveforms.shape[1]}], got {lengths.tolist()}")


@register_frontend("fbank", FbankConfig)
class Fbank(Frontend):
    """Kaldi fbank front-end (no parameters): ``(waveforms, lengths) -> (features, frame_lengths)``."""

    def __init__(self, config: FbankConfig | None = None):
        super().__init__()
        self.config = config or FbankConfig()
        self.num_channels = self.config.num_mel_bins + int(self.config.use_energy)
        self.frame_length, self.frame_shift, _ = frame_geometry(self.config)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fbank(waveforms, lengths, self.config)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return kaldi_num_frames(lengths, self.frame_length, self.frame_shift, self.config.snip_edges)
