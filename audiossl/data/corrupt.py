"""The waveform corruptor of a :class:`~audiossl.audio.corrupt.CorruptConfig`, with its sources read.

:class:`~audiossl.audio.corrupt.WaveformCorruptor` adds noise and reverberation from sources it
is given; :class:`Corruptor` reads them: the recordings of ``noise_dir`` and ``rir_dir``
(Kaldi data dirs) and, for babble noise, voices of the embedded synthetic corpus
(:mod:`audiossl.data.synth`). All are read once, at construction.
"""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.audio.corrupt import CorruptConfig, WaveformCorruptor, needs_voices
from audiossl.data.kaldi import DataDir
from audiossl.data.synth import SynthConfig, render_utterance
from audiossl.data.wav_scp import load_utterance
from audiossl.errors import DataError


def read_recordings(data_dir: str | Path, sample_rate: int) -> list[torch.Tensor]:
    """Every non-silent recording of a Kaldi data dir as a mono float32 waveform (T,) at ``sample_rate``."""
    data = DataDir.load(data_dir)
    waves = [load_utterance(data, utt, sample_rate)[0].float() for utt in data.utterance_ids]
    waves = [wave for wave in waves if wave.numel() > 0 and float(wave.abs().max()) > 0]
    if not waves:
        raise DataError("no non-silent recording in this data dir", data_dir)
    return waves


def synthetic_voices(sample_rate: int, count: int = 12) -> list[torch.Tensor]:
    """``count`` utterances of distinct speakers of the embedded synthetic corpus, unit variance."""
    config = SynthConfig(speakers=count, utts_per_speaker=1, seed=12345, sample_rate=sample_rate, words_per_utt=(3, 5))
    voices = []
    for speaker in range(count):
        audio = torch.from_numpy(render_utterance(config, speaker, 0)[1]).float()
        voices.append(audio / audio.std().clamp_min(1e-8))
    return voices


class Corruptor(WaveformCorruptor):
    """``(waveforms (B, T), lengths (B,), generator) -> corrupted waveforms (B, T)``; sources read from ``config``."""

    def __init__(self, config: CorruptConfig, sample_rate: int):
        super().__init__(
            config,
            sample_rate,
            noises=read_recordings(config.noise_dir, sample_rate) if config.noise_dir else None,
            rirs=read_recordings(config.rir_dir, sample_rate) if config.rir_dir else None,
            voices=synthetic_voices(sample_rate) if needs_voices(config) else None,
        )
