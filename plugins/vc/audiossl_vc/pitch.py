"""F0, voicing and A-weighted loudness on the SSL frame grid, and key shifts.

NeuCoSVC (Sha et al., "Neural Concatenative Singing Voice Conversion", 2023) drives its
synthesizer with the *source's* pitch and loudness while the matched SSL frames carry the target's
timbre, so both are measured here once per feature frame: frame ``i`` covers samples
``[i x hop, (i + 1) x hop)`` and every analysis window is centred on ``i x hop + hop / 2``.

* F0 and voicing: probabilistic YIN (Mauch and Dixon, ICASSP 2014) as ``librosa.pyin``
  implements it. Chosen over torchcrepe (Kim et al. 2018, MIT licence) because it needs no model
  download (the CREPE weights are not shipped with audiossl and machines may be offline), it
  is deterministic, ISC-licensed and librosa is already a dependency; its HMM gives a voicing
  decision with the F0. It is slower than CREPE on a GPU and less robust in noise.
* Loudness: the mean A-weighted power of a Hann-windowed frame in dB (the loudness feature of
  DDSP, Engel et al. 2020), with ``librosa.A_weighting`` (IEC 61672) as the weighting curve.
* Key shift: semitones added to the source F0 so it sings in the target's register --
  the difference of median voiced log-F0s, rounded to whole semitones so a melody stays in its
  key -- or a given number; beyond :data:`MAX_KEY_SHIFT` semitones it is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiossl.errors import ConfigError, DataError

#: F0 search range of the tracker (Hz): low bass to high soprano.
F0_MIN_HZ, F0_MAX_HZ = 50.0, 1100.0
#: Largest key shift accepted (semitones): two octaves either way.
MAX_KEY_SHIFT = 24.0
#: Loudness floor (dB): silence and padding read this.
LOUDNESS_FLOOR_DB = -100.0


@dataclass
class PitchTrack:
    """Per-frame F0 (N,) in Hz (0 where unvoiced), voicing (N,) bool and loudness (N,) in dB."""

    f0: torch.Tensor
    voiced: torch.Tensor
    loudness: torch.Tensor

    def __len__(self) -> int:
        return int(self.f0.shape[0])

    def fitted(self, frames: int) -> PitchTrack:
        """The track cut or padded (unvoiced, at the loudness floor) to ``frames`` frames (the encoder's count)."""
        extra = frames - len(self)
        if extra <= 0:
            return PitchTrack(self.f0[:frames], self.voiced[:frames], self.loudness[:frames])
        return PitchTrack(
            torch.cat([self.f0, self.f0.new_zeros(extra)]),
            torch.cat([self.voiced, self.voiced.new_zeros(extra)]),
            torch.cat([self.loudness, self.loudness.new_full((extra,), LOUDNESS_FLOOR_DB)]),
        )

    def shifted(self, semitones: float) -> PitchTrack:
        """The same track sung ``semitones`` higher (negative: lower)."""
        return PitchTrack(self.f0 * 2.0 ** (semitones / 12.0), self.voiced, self.loudness)


def _frames_around(waveform: np.ndarray, frames: int, hop: int, window: int) -> np.ndarray:
    """Windows (frames, window) centred on ``i x hop + hop / 2`` (zero-padded at both ends)."""
    padded = np.pad(waveform, (window // 2, window + frames * hop))
    starts = np.arange(frames) * hop + hop // 2  # window centre in the signal = start in the padded signal
    index = starts[:, None] + np.arange(window)[None, :]
    return padded[index]


def f0_window(sample_rate: int) -> int:
    """pYIN frame length: a power of two covering two periods of :data:`F0_MIN_HZ`."""
    return 1 << int(math.ceil(math.log2(2 * sample_rate / F0_MIN_HZ)))


def extract_f0(
    waveform: torch.Tensor, sample_rate: int, hop: int, frames: int | None = None,
    fmin: float = F0_MIN_HZ, fmax: float = F0_MAX_HZ,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """F0 (N,) in Hz (0 where unvoiced) and voicing (N,) of a waveform (T,), one per ``hop`` samples.

    ``frames`` defaults to ``T // hop`` (the SSL encoders' whole frames).
    """
    import librosa  # lazy: numba compilation on first use

    samples = waveform.detach().float().cpu().numpy().astype(np.float64)
    frames = samples.shape[0] // hop if frames is None else frames
    if frames == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    fmax = min(fmax, sample_rate / 4)
    # centre=True puts pYIN frame j at sample j x hop; start hop / 2 later to centre on the SSL frames
    f0, voiced, _ = librosa.pyin(
        np.pad(samples[hop // 2 :], (0, hop)), fmin=fmin, fmax=fmax, sr=sample_rate,
        frame_length=f0_window(sample_rate), hop_length=hop, center=True,
    )  # fmt: skip
    f0 = np.nan_to_num(np.asarray(f0, dtype=np.float64)[:frames], nan=0.0)
    voiced = np.asarray(voiced, dtype=bool)[:frames] & (f0 > 0)
    if f0.shape[0] < frames:
        f0 = np.pad(f0, (0, frames - f0.shape[0]))
        voiced = np.pad(voiced, (0, frames - voiced.shape[0]))
    return torch.from_numpy(np.where(voiced, f0, 0.0)).float(), torch.from_numpy(voiced)


def loudness_window(sample_rate: int) -> int:
    """Loudness frame length: a power of two of ~64 ms (enough bins for the A-weighting's low end)."""
    return 1 << int(round(math.log2(0.064 * sample_rate)))


def a_weighted_loudness(waveform: torch.Tensor, sample_rate: int, hop: int, frames: int | None = None) -> torch.Tensor:
    """Loudness (N,) in dB: mean over frequency of the A-weighted power of a Hann-windowed frame."""
    import librosa  # lazy: librosa pulls in numba

    samples = waveform.detach().float().cpu().numpy().astype(np.float64)
    frames = samples.shape[0] // hop if frames is None else frames
    window = loudness_window(sample_rate)
    chunks = _frames_around(samples, frames, hop, window) * np.hanning(window + 1)[:-1]  # (N, W), periodic Hann
    power = np.abs(np.fft.rfft(chunks, axis=1)) ** 2  # (N, W / 2 + 1)
    frequencies = np.fft.rfftfreq(window, 1.0 / sample_rate)
    weights = np.zeros_like(frequencies)  # the A-weighting is -inf dB at DC
    weights[1:] = 10.0 ** (librosa.A_weighting(frequencies[1:], min_db=None) / 10.0)
    mean = (power * weights).mean(axis=1)
    loud = 10.0 * np.log10(np.maximum(mean, 10.0 ** (LOUDNESS_FLOOR_DB / 10.0)))
    return torch.from_numpy(loud).float()


def analyse(waveform: torch.Tensor, sample_rate: int, hop: int, frames: int | None = None) -> PitchTrack:
    """F0, voicing and loudness of ``waveform`` (T,) on the ``hop`` grid (``frames`` of them)."""
    f0, voiced = extract_f0(waveform, sample_rate, hop, frames)
    return PitchTrack(f0, voiced, a_weighted_loudness(waveform, sample_rate, hop, f0.shape[0]))


def median_log2_f0(tracks: list[PitchTrack]) -> float | None:
    """Median of log2 F0 over the voiced frames of ``tracks``; None without any."""
    voiced = [t.f0[t.voiced] for t in tracks if bool(t.voiced.any())]
    if not voiced:
        return None
    return float(torch.cat(voiced).log2().median())


def check_key_shift(semitones: float, where: str | Path | None = None) -> float:
    """``semitones`` if it is within +-MAX_KEY_SHIFT, else a ConfigError naming ``where``."""
    if not math.isfinite(semitones) or abs(semitones) > MAX_KEY_SHIFT:
        raise ConfigError(
            f"key shift of {semitones:+.1f} semitones is beyond the sane range of +-{MAX_KEY_SHIFT:g} "
            "(two octaves); pick a target in a nearer register or give --key-shift N",
            where,
        )
    return float(semitones)


def key_shift(
    spec: str | float, source: PitchTrack, target: list[PitchTrack],
    source_name: str | Path | None = None, target_name: str | Path | None = None,
) -> float:  # fmt: skip
    """The semitones to add to the source F0: ``auto`` (median register of the target, whole semitones) or N."""
    if isinstance(spec, str) and spec.strip().lower() != "auto":
        try:
            spec = float(spec)
        except ValueError:
            raise ConfigError(f"--key-shift must be 'auto' or a number of semitones, got {spec!r}") from None
    if not isinstance(spec, str):
        return check_key_shift(float(spec))
    source_median = median_log2_f0([source])
    if source_median is None:
        raise DataError("the source has no voiced frames (pYIN found no pitch), nothing to sing", source_name)
    target_median = median_log2_f0(target)
    if target_median is None:
        raise DataError("the target pool has no voiced frames, so its register is unknown", target_name)
    return check_key_shift(float(round(12.0 * (target_median - source_median))), target_name)


def cents(f0: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1200 log2(f0 / reference), element-wise (both > 0)."""
    return 1200.0 * torch.log2(f0 / reference)
