"""Kaldi-compatible log-mel filterbanks (``compute-fbank-feats``) on whole padded batches.

These are the input features of AST and SSAST. Per utterance the output matches
``torchaudio.compliance.kaldi.fbank`` with the same options (dither 0) to about 1e-5, but
the batch is computed in one pass over all valid frames of all items instead of one call
per utterance:

* frames of every item are strided views of one flat buffer (no per-utterance loop);
* Kaldi's per-frame DC removal and pre-emphasis are linear, so ``pre(x - mean)`` is
  computed as ``pre(x) - (1 - c) * mean`` straight from the strided view into a reused,
  zero-tailed FFT buffer, then windowed in place;
* power is ``re^2 + im^2`` (no square root), and the mel matrix, which is banded, is
  applied as a few dense blocks over the FFT bins each group of filters actually covers;
* on CPU the frames are processed in chunks of :data:`CHUNK_FRAMES` rows of the flattened
  (item, frame) grid so that every intermediate stays in cache; chunks cut across items.

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
from audiossl.audio.options import resolve_config
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask

#: Kaldi's floor before the log: std::numeric_limits<float>::epsilon().
EPSILON = float(torch.finfo(torch.float32).eps)
#: Frames per chunk on CPU (a 1024 x 512 float buffer is 2 MiB and stays in cache).
CHUNK_FRAMES = 1024
#: Mel filters per dense block of the banded mel matmul.
MEL_BLOCK = 16

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
    """Window (N,), dense mel matrix (n_fft/2+1, M) and its banded blocks [(lo, hi, (hi-lo, g))]."""
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
    banks = torch.nn.functional.pad(banks, (0, 1)).to(dtype=dtype)  # (M, n_fft/2 + 1)
    blocks = []
    for start in range(0, num_mel_bins, MEL_BLOCK):
        group = banks[start : start + MEL_BLOCK]  # (g, n_fft/2 + 1)
        support = group.abs().sum(0).nonzero().flatten()
        lo, hi = (int(support[0]), int(support[-1]) + 1) if support.numel() else (0, 0)
        blocks.append((lo, hi, group[:, lo:hi].T.contiguous().to(device)))  # (hi - lo, g)
    return window, banks.T.contiguous().to(device), blocks


def _frame_source(
    waveforms: torch.Tensor, lengths: torch.Tensor, frame_length: int, frame_shift: int, snip_edges: bool
) -> tuple[torch.Tensor, int]:
    """All frames of the batch as one strided view (R, N), and the rows per item.

    Frame ``f`` of item ``b`` is row ``b * rows_per_item + f``. Each item gets a stretch of a
    flat buffer whose length is a multiple of the shift, so one ``unfold`` serves the batch.
    """
    batch, samples = waveforms.shape
    if snip_edges:
        width = math.ceil(max(samples, frame_length) / frame_shift) * frame_shift
        buffer = waveforms if width == samples else torch.nn.functional.pad(waveforms, (0, width - samples))
        flat = buffer.contiguous().reshape(-1)  # (B * width,)
        return flat.unfold(0, frame_length, frame_shift), width // frame_shift
    # Centred frames: frame f covers [f * shift - pad, f * shift - pad + N) of its utterance.
    pad = frame_length // 2 - frame_shift // 2
    left, right = max(pad, 0), frame_length + frame_shift
    width = math.ceil((left + samples + right) / frame_shift) * frame_shift
    buffer = waveforms.new_zeros(batch, width)  # (B, width)
    buffer[:, left : left + samples] = waveforms
    n = lengths.long().unsqueeze(1)  # (B, 1)
    if left:
        positions = torch.arange(-left, 0, device=waveforms.device).expand(batch, left)  # (B, left)
        buffer[:, :left] = waveforms.gather(1, reflect_index(positions, n))
    positions = n + torch.arange(right, device=waveforms.device)  # (B, right): the samples after each end
    buffer.scatter_(1, positions + left, waveforms.gather(1, reflect_index(positions, n)))
    flat = buffer.reshape(-1)[left - pad :]
    return flat.unfold(0, frame_length, frame_shift), width // frame_shift


def _chunk_plan(counts: list[int], chunk: int) -> list[list[tuple[int, int, int]]]:
    """Group the valid frames into chunks of about ``chunk`` rows: lists of (item, start, stop).

    An item with at least half a chunk of frames is split into equal single-item chunks (read
    as strided views, written as row slices); shorter items are packed together (gathered).
    """
    plan: list[list[tuple[int, int, int]]] = []
    packed: list[tuple[int, int, int]] = []
    packed_rows = 0
    for item, count in enumerate(counts):
        if count == 0:
            continue
        if count >= chunk // 2:
            pieces = -(-count // chunk)
            bounds = [count * k // pieces for k in range(pieces + 1)]
            plan.extend([(item, bounds[k], bounds[k + 1])] for k in range(pieces))
            continue
        if packed_rows + count > chunk:
            plan.append(packed)
            packed, packed_rows = [], 0
        packed.append((item, 0, count))
        packed_rows += count
    if packed:
        plan.append(packed)
    return plan


def _fbank_rows(
    frames: torch.Tensor,
    work: torch.Tensor,
    out: torch.Tensor,
    config: FbankConfig,
    constants: tuple,
    generator: torch.Generator | None,
    chunked: bool,
) -> None:
    """Write the features (n, C) of ``frames`` (n, N) into ``out``; ``work`` (n, n_fft) has zero columns >= N."""
    window, mel_dense, blocks = constants
    length = frames.shape[1]
    c = config.preemphasis
    if config.dither != 0.0:
        noise = torch.randn(frames.shape, generator=generator, device=frames.device, dtype=frames.dtype)
        frames = frames + config.dither * noise
    mean = frames.mean(1, keepdim=True) if config.remove_dc_offset else None  # (n, 1)
    energy = None
    if config.use_energy and config.raw_energy:
        energy = (frames if mean is None else frames - mean).square().sum(1)  # (n,)
    # Same operations in the same order as Kaldi/torchaudio, so that the windowed frames are
    # bit-identical: the FFT's rounding then matches too (it decides the weakest mel bins).
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
    if config.use_power:
        squares = torch.view_as_real(spectrum).flatten(1).square()  # (n, n_fft + 2): re^2, im^2 interleaved
        power = squares[:, 0::2] + squares[:, 1::2]  # (n, n_fft/2 + 1)
    else:
        power = spectrum.abs()
    mel_out = out if energy is None else (out[:, :-1] if config.htk_compat else out[:, 1:])  # (n, M)
    if not chunked:
        mel_out.copy_(power @ mel_dense)  # one dense matmul: best on accelerators
    elif mel_out.is_contiguous():
        torch.cat([power[:, lo:hi] @ weights for lo, hi, weights in blocks], dim=1, out=mel_out)
    else:
        mel_out.copy_(torch.cat([power[:, lo:hi] @ weights for lo, hi, weights in blocks], dim=1))
    if config.use_log_fbank:
        mel_out.clamp_min_(EPSILON).log_()
    if energy is not None:
        energy = energy.clamp_min(EPSILON).log()
        if config.energy_floor > 0.0:
            energy = energy.clamp_min(math.log(config.energy_floor))
        out[:, -1 if config.htk_compat else 0] = energy


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
    item's ``frame_lengths`` (B,). ``generator`` drives the dither noise.
    """
    config = resolve_config(FbankConfig, config, options)
    _check_batch(waveforms, lengths)
    length, shift, n_fft = frame_geometry(config)
    device = waveforms.device
    frame_lengths = kaldi_num_frames(lengths.to(device), length, shift, config.snip_edges)  # (B,)
    batch = waveforms.shape[0]
    channels = config.num_mel_bins + int(config.use_energy)
    counts = frame_lengths.tolist()
    max_frames = max(counts, default=0)
    if max_frames == 0:
        return waveforms.new_zeros(batch, 0, channels), frame_lengths
    frames, rows_per_item = _frame_source(waveforms, lengths, length, shift, config.snip_edges)  # (R, N)
    constants = _constants(config, device, waveforms.dtype)
    features = waveforms.new_empty(batch, max_frames, channels)  # (B, F, C)
    flat_features = features.view(batch * max_frames, channels)  # (B * F, C)
    padding_rows = (~lengths_to_mask(frame_lengths, max_frames)).flatten().nonzero().flatten()
    flat_features.index_fill_(0, padding_rows, 0.0)
    chunked = _chunked(device)
    chunk = CHUNK_FRAMES if chunked else sum(counts)
    plan = _chunk_plan(counts, chunk)
    work = waveforms.new_zeros(max(sum(stop - start for _, start, stop in part) for part in plan), n_fft)
    for part in plan:
        size = sum(stop - start for _, start, stop in part)
        if len(part) == 1:
            item, start, stop = part[0]
            rows = frames[item * rows_per_item + start : item * rows_per_item + stop]  # (n, N) strided view
            out = flat_features[item * max_frames + start : item * max_frames + stop]  # (n, C)
            _fbank_rows(rows, work[:size], out, config, constants, generator, chunked)
            continue
        source = torch.cat([torch.arange(i * rows_per_item + a, i * rows_per_item + b) for i, a, b in part])
        target = torch.cat([torch.arange(i * max_frames + a, i * max_frames + b) for i, a, b in part])
        out = waveforms.new_empty(size, channels)  # (n, C)
        rows = frames.index_select(0, source.to(device))  # (n, N) gathered
        _fbank_rows(rows, work[:size], out, config, constants, generator, chunked)
        flat_features.index_copy_(0, target.to(device), out)
    return features, frame_lengths


def _chunked(device: torch.device) -> bool:
    """Cache-sized chunks and banded mel blocks on CPU; one pass with a dense mel matmul elsewhere."""
    return device.type == "cpu"


def _check_batch(waveforms: torch.Tensor, lengths: torch.Tensor) -> None:
    """Shapes (B, T) and (B,), floating-point samples, 0 <= lengths <= T."""
    if waveforms.dim() != 2 or lengths.shape != waveforms.shape[:1]:
        raise ValueError(
            f"expected waveforms (B, T) and lengths (B,), got {tuple(waveforms.shape)}, {tuple(lengths.shape)}"
        )
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
