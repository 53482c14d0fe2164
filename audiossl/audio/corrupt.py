"""Waveform corruption for robust speaker embeddings: additive noise at a random SNR, and reverberation.

Speaker self-supervision (DINO for speakers, Chen et al. 2022; Jung et al. 2022) needs two
views of an utterance that share the speaker and differ in channel, so the augmentation here
acts on the waveform before the front-end, as the MUSAN + RIR recipes of speaker verification
do (Snyder et al., "X-vectors", 2018):

* **noise** at an SNR drawn uniformly in ``snr_db``: generated (``white``, ``pink`` 1/f, or
  ``babble``: a sum of several voices, by default of the embedded synthetic corpus), or
  recordings of a noise data dir (MUSAN-style), looped and cut at a random offset;
* **reverberation**: convolution (``torchaudio.functional.fftconvolve``) with a room impulse
  response: generated as exponentially decaying noise with an RT60 drawn in ``rt60_s`` (the
  stochastic tail model of Polack, 1988), or read from a RIR data dir. The output keeps the
  input's length (the tail past the end is dropped) and its level.

Recordings, impulse responses and voices are read one floor up, by
:class:`audiossl.data.corrupt.Corruptor` (this module decodes nothing from a data dir).
Every draw comes from the ``torch.Generator`` passed in, so a batch corrupts the same way twice.
Lengths are respected: signal power and the convolution use valid samples only (padding is
zero, and convolution is causal), and the padding of the output is zero, so an item corrupts
the same way in any batch (given the same draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional

from audiossl.audio.moved import moved_attribute
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask

#: Deprecated: Corruptor (which reads the config's data dirs) moved up to audiossl.data.corrupt.
_MOVED = {"Corruptor": "audiossl.data.corrupt"}


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, _MOVED, name)


#: Noise kinds that are generated rather than read.
NOISE_KINDS = ("white", "pink", "babble")


@dataclass(kw_only=True)
class CorruptConfig:
    """Which corruptions, how often and how strong (defaults: moderate, as speaker SSL recipes use)."""

    noise_prob: float = 0.5
    """Probability that an utterance gets additive noise."""

    noise_kinds: tuple[str, ...] = NOISE_KINDS
    """Generated noises to draw from (``white``, ``pink``, ``babble``); ignored when ``noise_dir`` is set."""

    noise_dir: str | None = None
    """Kaldi data dir of noise recordings (wav.scp) to add instead of generated noise; read once."""

    snr_db: tuple[float, float] = (5.0, 20.0)
    """Range of the signal-to-noise ratio (dB), drawn uniformly per utterance."""

    babble_voices: tuple[int, int] = (3, 6)
    """Inclusive range of the number of synthetic voices summed into one babble noise."""

    reverb_prob: float = 0.3
    """Probability that an utterance is reverberated (before the noise is added)."""

    rt60_s: tuple[float, float] = (0.2, 0.8)
    """Range of the reverberation time RT60 (s) of generated room impulse responses."""

    rir_dir: str | None = None
    """Kaldi data dir of room impulse responses to use instead of generated ones; read once."""

    def __post_init__(self) -> None:
        for name in ("noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"corrupt.{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = [kind for kind in self.noise_kinds if kind not in NOISE_KINDS]
        if unknown or (not self.noise_kinds and self.noise_dir is None and self.noise_prob > 0):
            raise ConfigError(
                f"corrupt.noise_kinds must be a non-empty subset of {NOISE_KINDS}, got {self.noise_kinds}"
            )
        if self.snr_db[0] > self.snr_db[1]:
            raise ConfigError(f"corrupt.snr_db must be (low, high), got {self.snr_db}")
        low, high = self.babble_voices
        if not 1 <= low <= high:
            raise ConfigError(
                f"corrupt.babble_voices must be (min, max) with 1 <= min <= max, got {self.babble_voices}"
            )
        if not 0.0 < self.rt60_s[0] <= self.rt60_s[1]:
            raise ConfigError(f"corrupt.rt60_s must be (low, high) with 0 < low <= high, got {self.rt60_s}")


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def pink_noise(num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """1/f (pink) noise of unit variance (T,): white Gaussian noise shaped by 1/sqrt(f) in frequency."""
    white = torch.randn(num_samples, generator=generator)  # (T,)
    spectrum = torch.fft.rfft(white)  # (T // 2 + 1,)
    freqs = torch.arange(spectrum.shape[0], dtype=torch.float32)
    spectrum = spectrum / freqs.clamp_min(1.0).sqrt()
    spectrum[0] = 0.0  # no DC offset
    noise = torch.fft.irfft(spectrum, n=num_samples)
    return noise / noise.std().clamp_min(1e-8)


def exponential_rir(
    sample_rate: int, rt60_s: float, generator: torch.Generator | None = None, direct_delay_s: float = 0.0
) -> torch.Tensor:
    """A synthetic room impulse response (L,), L = RT60 seconds of samples, unit energy.

    A unit direct path followed by Gaussian noise whose amplitude envelope is
    exp(-ln(1000) t / RT60): down 60 dB at t = RT60. ``direct_delay_s`` puts silence before
    the direct path (a source away from the microphone).
    """
    length = max(int(round(rt60_s * sample_rate)), 2)
    t = torch.arange(length, dtype=torch.float32) / sample_rate
    envelope = torch.exp(-math.log(1000.0) * t / rt60_s)  # amplitude: -60 dB at t = RT60
    rir = torch.randn(length, generator=generator) * envelope * 0.3  # (L,)
    delay = min(int(round(direct_delay_s * sample_rate)), length - 1)
    rir[:delay] = 0.0
    rir[delay] = 1.0
    return rir / rir.norm().clamp_min(1e-8)


def _loop(wave: torch.Tensor, length: int, generator: torch.Generator | None) -> torch.Tensor:
    """``length`` samples of ``wave`` (T,) from a random offset, looped when shorter."""
    offset = _randint(0, wave.numel() - 1, generator)
    repeats = (offset + length) // wave.numel() + 1
    return wave.repeat(repeats)[offset : offset + length]


def needs_voices(config: CorruptConfig) -> bool:
    """Whether ``config`` can draw babble noise (and so needs voices to sum)."""
    return config.noise_dir is None and "babble" in config.noise_kinds and config.noise_prob > 0


class WaveformCorruptor:
    """``(waveforms (B, T), lengths (B,), generator) -> corrupted waveforms (B, T)`` on any device.

    The noise and impulse-response sources are given, already read: ``noises`` (the recordings
    of ``config.noise_dir``), ``rirs`` (of ``config.rir_dir``) and ``voices`` (unit-variance
    speech summed into babble). :class:`audiossl.data.corrupt.Corruptor` reads them from the
    config's data dirs and the synthetic corpus; this class never touches a data dir. Draws
    happen on the CPU generator in a fixed order per item (reverb?, RT60 or RIR index, RIR
    noise, noise?, kind, SNR, noise samples), then the item is processed on the waveforms'
    device.
    """

    def __init__(
        self,
        config: CorruptConfig,
        sample_rate: int,
        *,
        noises: list[torch.Tensor] | None = None,
        rirs: list[torch.Tensor] | None = None,
        voices: list[torch.Tensor] | None = None,
    ):
        self.config = config
        self.sample_rate = sample_rate
        self.noises = noises or None
        self.rirs = None if not rirs else [rir / rir.norm().clamp_min(1e-8) for rir in rirs]
        wants_voices = self.noises is None and "babble" in config.noise_kinds and config.noise_prob > 0
        missing = [
            what
            for what, absent in (
                ("noises (config.noise_dir)", config.noise_dir is not None and self.noises is None),
                ("rirs (config.rir_dir)", config.rir_dir is not None and self.rirs is None),
                ("voices (babble noise)", wants_voices and not voices),
            )
            if absent
        ]
        if missing:
            raise ConfigError(
                f"the corruption config needs {', '.join(missing)}: pass them, or build "
                "audiossl.data.corrupt.Corruptor, which reads them"
            )
        self.voices = list(voices or [])

    def noise(self, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """One noise signal of ``length`` samples (T,), any level (it is scaled to the SNR later)."""
        if self.noises is not None:
            index = _randint(0, len(self.noises) - 1, generator)
            return _loop(self.noises[index], length, generator)
        kind = self.config.noise_kinds[_randint(0, len(self.config.noise_kinds) - 1, generator)]
        if kind == "white":
            return torch.randn(length, generator=generator)
        if kind == "pink":
            return pink_noise(length, generator)
        count = _randint(*self.config.babble_voices, generator)
        picks = torch.randperm(len(self.voices), generator=generator)[:count].tolist()
        return torch.stack([_loop(self.voices[i], length, generator) for i in picks]).sum(dim=0)

    def rir(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One room impulse response (L,) of unit energy."""
        if self.rirs is not None:
            return self.rirs[_randint(0, len(self.rirs) - 1, generator)]
        return exponential_rir(self.sample_rate, _uniform(*self.config.rt60_s, generator), generator)

    def __call__(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        config = self.config
        out = waveforms.float().clone()  # (B, T)
        for row, length in enumerate(lengths.tolist()):
            if length <= 0:
                continue
            wave = out[row, :length]  # (T_b,)
            if float(torch.rand((), generator=generator)) < config.reverb_prob:
                rir = self.rir(generator).to(wave.device)
                level = wave.square().mean()
                wave = torchaudio.functional.fftconvolve(wave, rir)[:length]
                wave = wave * torch.sqrt(level / wave.square().mean().clamp_min(1e-12))
            if float(torch.rand((), generator=generator)) < config.noise_prob:
                noise = self.noise(length, generator).to(wave.device)
                snr = _uniform(*config.snr_db, generator)
                signal_power = wave.square().mean()
                noise_power = noise.square().mean().clamp_min(1e-12)
                wave = wave + noise * torch.sqrt(signal_power / (noise_power * 10.0 ** (snr / 10.0)))
            out[row, :length] = wave
        return out * lengths_to_mask(lengths.to(out.device), out.shape[1])  # padding stays zero
