"""The data section of a config: how audio is loaded, batched and turned into encoder input.

:class:`DataConfig` is shared by pretraining (``PretrainConfig.data``) and by the trained-encoder
bundle (:mod:`audiossl.models`), which needs its front-end and normalisation settings to rebuild
the input pipeline a checkpoint was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from audiossl.audio.augment import SpecAugmentConfig
from audiossl.errors import ConfigError


@dataclass(kw_only=True)
class DataConfig:
    """How audio becomes encoder input."""

    sample_rate: int = 16000
    """Rate (Hz) every utterance is resampled to; also the front-end's rate."""

    max_seconds_per_batch: float = 100.0
    """Padded seconds of audio per batch per process (longest utterance x batch size)."""

    max_utt_seconds: float | None = 10.0
    """Crop longer utterances to a random window of this length (new window every epoch); None = no crop."""

    min_utt_seconds: float = 0.0
    """Skip utterances shorter than this (after cropping they would be too short to mask)."""

    num_buckets: int = 10
    """Duration buckets of the length-bucketing sampler."""

    num_workers: int = 2
    """DataLoader worker processes (0 = load in the training process); with ``backend: fairseq2``, the
    parallel calls of its decoding (and fbank) map (0 counts as 1)."""

    backend: str = "default"
    """Registered data loader (:data:`audiossl.data.backends.DATA_BACKENDS`): ``default`` (torch
    DataLoader over :class:`~audiossl.data.dataset.AudioDataset`), or ``fairseq2`` (fairseq2's native
    data pipeline decodes audio in C++ threads; the same batches, ``pip install 'audiossl[fairseq2]'``;
    plain audio files only: no segments, pipes or resampling), or ``shar`` (lhotse Shar shards written by
    ``audiossl data export-shar``, streamed with a shuffle buffer and length bucketing, sharded by rank x
    worker; ``pip install 'audiossl[shar]'``; see docs/data.md)."""

    fairseq2_fbank: bool = False
    """With ``backend: fairseq2``: compute the Kaldi fbank in fairseq2's C++ workers (its
    ``WaveformToFbankConverter``) instead of in the training process; needs ``frontend: fbank`` with
    default options except ``num_mel_bins`` (its log energies differ from ours by up to ~1e-3)."""

    frontend: str = "fbank"
    """Registered fixed front-end (``fbank``, ``log_mel``, ``mfcc``), or ``none`` to feed waveforms to
    encoders whose input kind is ``waveform`` (their CNN is part of the encoder)."""

    frontend_config: dict[str, Any] = field(default_factory=dict)
    """Fields of the front-end's config that differ from its defaults (e.g. ``num_mel_bins: 80``);
    its ``sample_rate`` is taken from ``sample_rate`` above."""

    normalize: Literal["global", "utterance", "none"] = "global"
    """Feature normalisation: corpus statistics (``global``, computed over the training data at the
    start unless ``global_stats`` is given), per-utterance CMVN (``utterance``; for waveforms, zero
    mean and unit variance per utterance), or ``none``."""

    global_stats: str | None = None
    """Statistics file (``audiossl features stats``) for ``normalize: global``; None = compute them."""

    scalar_stats: bool = False
    """With global statistics, one mean and standard deviation over all channels (AST) instead of per channel."""

    spec_augment: SpecAugmentConfig | None = None
    """SpecAugment on the (normalised) features while training; None = off (the default for SSL,
    whose objectives mask their own inputs)."""

    channel: int | None = None
    """Multi-channel recordings: null mixes the channels down to mono (their mean; the first such file
    is logged, once per process), an index (0 = the first channel) reads that channel only; a recording
    without that channel is an error naming the file. ``audiossl data validate`` reports recordings
    whose channel count differs from the rest of a data dir."""

    allow_pipes: bool = False
    """Run ``wav.scp`` pipe commands (``cmd |``) of the run's data dirs. They run through the shell,
    so they are refused by default; ``false`` leaves the decision to the process policy
    (``audiossl --allow-pipes ...`` or ``AUDIOSSL_ALLOW_PIPES=1``; see :mod:`audiossl.data.wav_scp`)."""

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ConfigError(f"data.sample_rate must be positive, got {self.sample_rate}")
        if self.max_seconds_per_batch <= 0:
            raise ConfigError(f"data.max_seconds_per_batch must be positive, got {self.max_seconds_per_batch}")
        if self.max_utt_seconds is not None and self.max_utt_seconds <= 0:
            raise ConfigError(f"data.max_utt_seconds must be positive or null, got {self.max_utt_seconds}")
        if self.min_utt_seconds < 0:
            raise ConfigError(f"data.min_utt_seconds must be >= 0, got {self.min_utt_seconds}")
        if self.num_workers < 0 or self.num_buckets < 1:
            raise ConfigError("data.num_workers must be >= 0 and data.num_buckets >= 1")
        if self.channel is not None and (isinstance(self.channel, bool) or self.channel < 0):
            raise ConfigError(f"data.channel must be null (mix down) or a channel index >= 0, got {self.channel!r}")
        if self.fairseq2_fbank and self.backend != "fairseq2":
            raise ConfigError("data.fairseq2_fbank needs data.backend: fairseq2")
