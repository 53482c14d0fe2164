"""A small source-filter voice: glottal pulses and noise shaped by formant resonators.

This is the sound engine of the embedded synthetic corpus (:mod:`audiossl.data.synth`).
It follows the acoustic theory of speech production (Fant, 1960): speech is a source
(the larynx's quasi-periodic airflow, or turbulence noise at a constriction) filtered by
the vocal tract, whose resonances are the formants. The filter is built the way Klatt's
cascade/parallel formant synthesiser (Klatt, 1980) does it: voiced sound runs through a
cascade of second-order resonators, one per formant; frication runs through a separate
parallel resonator placed at the constriction's noise band.

Everything here is deterministic given a ``numpy.random.Generator``; nothing reads files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

#: Control-parameter rate (Hz): F0 tracks are given, and formants updated, every 5 ms.
FRAME_RATE = 200

#: Symbol of a silent span (pauses, leading and trailing silence).
SILENCE = "sil"

#: Formant bandwidths (Hz) of the cascade F1..F5; F4 and F5 are fixed per speaker.
_BANDWIDTHS = (80.0, 100.0, 150.0, 250.0, 300.0)
#: Reference F4 and F5 (Hz) of the reference tract, scaled like F1-F3.
_HIGH_FORMANTS = (3400.0, 4500.0)
#: Formants must stay below this fraction of the sample rate.
_MAX_FORMANT_FRACTION = 0.45


@dataclass(frozen=True)
class Phone:
    """One phone of the inventory: its formant targets and how it is excited."""

    symbol: str
    kind: str
    """"vowel", "nasal", "liquid", "fricative" or "stop"."""
    formants: tuple[float, float, float]
    """F1-F3 targets (Hz) for the reference (adult male) vocal tract; consonants give loci."""
    voicing: float = 0.0
    """Amplitude of the glottal source (1 for vowels, lower for nasals and liquids)."""
    frication: float = 0.0
    """Amplitude of the noise source (fricatives: the whole phone, stops: the burst)."""
    noise_hz: float = 0.0
    """Centre of the frication noise band (reference tract)."""
    noise_bandwidth: float = 0.0
    """Width of the frication noise band."""
    aspiration: float = 0.0
    """Aspiration after a stop's release, sent through the formant cascade."""


def _inventory(*phones: Phone) -> dict[str, Phone]:
    return {phone.symbol: phone for phone in phones}


#: The phone inventory. Vowel targets are rounded averages of published adult male vowel
#: formant measurements (Peterson & Barney, 1952); consonant values are textbook loci.
PHONES: dict[str, Phone] = _inventory(
    Phone("i", "vowel", (270, 2290, 3010), voicing=1.0),
    Phone("e", "vowel", (530, 1840, 2480), voicing=1.0),
    Phone("a", "vowel", (730, 1090, 2440), voicing=1.0),
    Phone("o", "vowel", (570, 840, 2410), voicing=1.0),
    Phone("u", "vowel", (300, 870, 2240), voicing=1.0),
    Phone("m", "nasal", (280, 1000, 2200), voicing=0.35),
    Phone("n", "nasal", (280, 1500, 2500), voicing=0.35),
    Phone("l", "liquid", (360, 1100, 2700), voicing=0.6),
    Phone("r", "liquid", (350, 1060, 1380), voicing=0.6),
    Phone("w", "liquid", (300, 650, 2200), voicing=0.6),
    Phone("s", "fricative", (400, 1800, 2600), frication=0.5, noise_hz=5500, noise_bandwidth=2500),
    Phone("sh", "fricative", (400, 1900, 2500), frication=0.6, noise_hz=2800, noise_bandwidth=1500),
    Phone("f", "fricative", (400, 1100, 2300), frication=0.15, noise_hz=4500, noise_bandwidth=5000),
    Phone("p", "stop", (400, 900, 2200), frication=0.5, noise_hz=800, noise_bandwidth=1500, aspiration=0.08),
    Phone("t", "stop", (400, 1800, 2600), frication=0.7, noise_hz=4000, noise_bandwidth=2500, aspiration=0.08),
    Phone("k", "stop", (400, 2000, 2500), frication=0.6, noise_hz=2000, noise_bandwidth=1200, aspiration=0.08),
)


@dataclass(frozen=True)
class Voice:
    """A speaker's larynx and vocal tract (an emotion may adjust some of these)."""

    f0_hz: float
    """Typical fundamental frequency; used to normalise the source level."""
    formant_scale: float = 1.0
    """Every formant and noise band is multiplied by this (a shorter tract: above 1)."""
    open_quotient: float = 0.6
    """Fraction of each glottal period during which the glottis is open."""
    tilt: float = 0.5
    """One-pole low-pass coefficient on the voiced source: higher is darker (steeper tilt)."""
    breathiness: float = 0.03
    """Aspiration noise mixed into the voiced source, relative to the pulses."""
    jitter: float = 0.005
    """Relative standard deviation of period-to-period F0 perturbation."""
    shimmer: float = 0.03
    """Relative standard deviation of period-to-period amplitude perturbation."""


@dataclass(frozen=True)
class Span:
    """A phone (a key of :data:`PHONES`, or :data:`SILENCE`) from ``start`` to ``end`` seconds."""

    phone: str
    start: float
    end: float


def num_samples(spans: Sequence[Span], sample_rate: int) -> int:
    """Length in samples of the audio :func:`render` makes for ``spans``."""
    return int(round(spans[-1].end * sample_rate))


def render(
    spans: Sequence[Span], voice: Voice, f0: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthesise ``spans`` with ``voice``; ``f0`` (Hz) is sampled at :data:`FRAME_RATE`.

    Returns float64 samples (not level-normalised) of length :func:`num_samples`.
    """
    n = num_samples(spans, sample_rate)
    times = np.arange(n) / sample_rate  # (n,)
    voicing, frication, aspiration = _amplitude_tracks(spans, times)  # each (n,)
    f0_samples = np.interp(times, np.arange(len(f0)) / FRAME_RATE, f0)  # (n,)

    flow = _glottal_flow(f0_samples, voicing, voice, sample_rate, rng)
    # Lip radiation differentiates the flow; normalise so a pulse's slope peaks near 1.
    opening = voice.open_quotient * 0.72 * sample_rate / voice.f0_hz
    voiced = np.diff(flow, prepend=0.0) * (2.0 * opening / np.pi)
    voiced = lfilter([1.0 - voice.tilt], [1.0, -voice.tilt], voiced)
    breath = rng.standard_normal(n) * (voice.breathiness * voicing * (0.3 + flow) + aspiration)
    cascade_input = voiced + breath

    block = max(1, int(round(sample_rate / FRAME_RATE)))
    block_times = (np.arange(0, n, block) + block / 2) / sample_rate  # (n_blocks,)
    formants = _formant_tracks(spans, block_times, voice.formant_scale, sample_rate)  # (3, n_blocks)
    out = cascade_input
    for track, bandwidth in zip(formants, _BANDWIDTHS[:3], strict=True):
        out = _varying_resonator(out, track, np.full_like(track, bandwidth), block, sample_rate, unit_peak=False)
    for ref, bandwidth in zip(_HIGH_FORMANTS, _BANDWIDTHS[3:], strict=True):
        freq = ref * voice.formant_scale
        if freq < _MAX_FORMANT_FRACTION * sample_rate:
            b, a = _resonator(np.array([freq]), np.array([bandwidth]), sample_rate, unit_peak=False)
            out = lfilter(b[0], a[0], out)

    noise_hz, noise_bw = _noise_tracks(spans, block_times, voice.formant_scale, sample_rate)  # (n_blocks,) each
    noise = rng.standard_normal(n) * frication
    out = out + _varying_resonator(noise, noise_hz, noise_bw, block, sample_rate, unit_peak=True)
    return out


def _amplitude_tracks(spans: Sequence[Span], times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample-level voicing, frication and aspiration amplitudes with short ramps at boundaries."""
    keys: dict[str, list[tuple[float, float]]] = {"voicing": [], "frication": [], "aspiration": []}
    for span in spans:
        start, end = span.start, span.end
        ramp = min(0.015, (end - start) / 3)
        if span.phone == SILENCE:
            for name in keys:
                keys[name] += [(start + ramp, 0.0), (end - ramp, 0.0)]
            continue
        phone = PHONES[span.phone]
        if phone.kind == "stop":
            # Closure (silence), a release burst of frication, then aspiration until voicing starts.
            release = start + 0.6 * (end - start)
            keys["voicing"] += [(start + ramp, 0.0), (end - ramp, 0.0)]
            keys["frication"] += [
                (start + ramp, 0.0),
                (release, 0.0),
                (release + 0.002, phone.frication),
                (release + 0.015, 0.15 * phone.frication),
                (end, 0.0),
            ]
            keys["aspiration"] += [(start + ramp, 0.0), (release + 0.005, 0.0), (release + 0.02, phone.aspiration)]
            keys["aspiration"] += [(end, phone.aspiration)]
            continue
        keys["voicing"] += [(start + ramp, phone.voicing), (end - ramp, phone.voicing)]
        keys["frication"] += [(start + ramp, phone.frication), (end - ramp, phone.frication)]
        keys["aspiration"] += [(start + ramp, 0.0), (end - ramp, 0.0)]
    tracks = []
    for points in keys.values():
        key_times, values = zip(*points, strict=True)
        tracks.append(np.interp(times, key_times, values))
    return tracks[0], tracks[1], tracks[2]


def _formant_tracks(spans: Sequence[Span], times: np.ndarray, scale: float, sample_rate: int) -> np.ndarray:
    """F1-F3 (3, len(times)): steady targets in each phone's middle, linear transitions between."""
    key_times: list[float] = []
    key_values: list[tuple[float, float, float]] = []
    for span in spans:
        if span.phone == SILENCE:
            continue  # formants hold (interpolate) across pauses
        duration = span.end - span.start
        key_times += [span.start + 0.3 * duration, span.end - 0.3 * duration]
        key_values += [PHONES[span.phone].formants] * 2
    if not key_times:
        key_times, key_values = [0.0], [PHONES["a"].formants]
    values = np.asarray(key_values, dtype=np.float64) * scale  # (K, 3)
    tracks = np.stack([np.interp(times, key_times, values[:, i]) for i in range(3)])  # (3, T)
    return np.minimum(tracks, _MAX_FORMANT_FRACTION * sample_rate)


def _noise_tracks(
    spans: Sequence[Span], times: np.ndarray, scale: float, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and bandwidth (Hz) of the frication resonator, held between noisy phones."""
    key_times: list[float] = []
    centres: list[float] = []
    widths: list[float] = []
    for span in spans:
        phone = PHONES.get(span.phone)
        if phone is None or phone.frication <= 0:
            continue
        key_times += [span.start, span.end]
        centres += [phone.noise_hz * scale] * 2
        widths += [phone.noise_bandwidth * scale] * 2
    if not key_times:
        key_times, centres, widths = [0.0], [3000.0], [2000.0]
    centre = np.minimum(np.interp(times, key_times, centres), _MAX_FORMANT_FRACTION * sample_rate)
    return centre, np.interp(times, key_times, widths)


def _resonator(
    freq: np.ndarray, bandwidth: np.ndarray, sample_rate: int, unit_peak: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Second-order resonators (Klatt 1980 form): numerators (K, 1), denominators (K, 3).

    ``unit_peak=False`` gives unity gain at 0 Hz (cascade formants); ``True`` unity gain
    at the centre frequency (the parallel noise branch).
    """
    radius = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2.0 * np.pi * freq / sample_rate
    a1 = -2.0 * radius * np.cos(theta)
    a2 = radius**2
    denominators = np.stack([np.ones_like(a1), a1, a2], axis=1)  # (K, 3)
    if unit_peak:
        z = np.exp(-1j * theta)
        gain = np.abs(1.0 + a1 * z + a2 * z * z)
    else:
        gain = 1.0 + a1 + a2
    return gain[:, None], denominators


def _varying_resonator(
    x: np.ndarray, freq: np.ndarray, bandwidth: np.ndarray, block: int, sample_rate: int, unit_peak: bool
) -> np.ndarray:
    """Filter ``x`` by a resonator whose coefficients change every ``block`` samples.

    The recursion always runs on the true past outputs (direct form I): at each block the
    filter state is rebuilt from the last two output samples under the new coefficients,
    so changing a formant does not inject a click the way carrying over a transposed
    state would.
    """
    numerators, denominators = _resonator(freq, bandwidth, sample_rate, unit_peak)
    out = np.empty_like(x)
    previous = np.zeros(2)  # y[n-1], y[n-2]
    for index in range(len(freq)):
        lo, hi = index * block, min(len(x), (index + 1) * block)
        _, a1, a2 = denominators[index]
        state = np.array([-a1 * previous[0] - a2 * previous[1], -a2 * previous[0]])
        out[lo:hi], _ = lfilter(numerators[index], denominators[index], x[lo:hi], zi=state)
        previous = np.array([out[hi - 1], out[hi - 2] if hi - lo >= 2 else previous[0]])
    return out


def _glottal_flow(
    f0: np.ndarray, voicing: np.ndarray, voice: Voice, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Glottal airflow: one Rosenberg-style pulse per period, with jitter and shimmer.

    Each pulse opens as a raised cosine and closes as a quarter cosine (Rosenberg, 1971);
    pulse starts are fractional so the period is not quantised to whole samples.
    """
    n = len(f0)
    flow = np.zeros(n)
    start = 0.0
    while start < n:
        index = int(start)
        period = sample_rate / f0[index] * (1.0 + voice.jitter * rng.standard_normal())
        amplitude = voicing[index] * (1.0 + voice.shimmer * rng.standard_normal())
        if amplitude > 1e-4:
            opening = voice.open_quotient * 0.72 * period
            closing = voice.open_quotient * 0.28 * period
            positions = np.arange(int(np.ceil(start)), min(n, int(np.ceil(start + opening + closing))))
            tau = positions - start
            pulse = np.where(
                tau < opening,
                0.5 * (1.0 - np.cos(np.pi * tau / opening)),
                np.cos(np.pi * (tau - opening) / (2.0 * closing)),
            )
            flow[positions] += amplitude * np.clip(pulse, 0.0, None)
        start += max(period, 1.0)
    return flow
