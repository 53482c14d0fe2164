"""Training data through fairseq2's native data pipeline (``data.backend: fairseq2``).

:class:`Fairseq2TrainData` is :class:`~audiossl.data.backends.default.TrainData` with another engine
under it. Which utterances form which batch, in which order, and which window of each
utterance is read are still decided by our :class:`~audiossl.data.sampler.BucketBatchSampler`
and :meth:`~audiossl.data.dataset.AudioDataset.crop_window`, so the batches are the same as
the default loader's (same seed, epoch and rank), DDP sharding is unchanged and a checkpoint's
``(epoch, position)`` resumes exactly. fairseq2 does the work: its ``FileMapper`` reads the
files and its ``AudioDecoder`` (libsndfile) decodes them in C++ threads (``num_parallel_calls``
= ``data.num_workers``), optionally followed by its Kaldi fbank (``WaveformToFbankConverter``,
kaldi-native-fbank) with ``data.fairseq2_fbank``; batches are padded and prefetched in the
pipeline's background thread.

Limits, refused with a :class:`~audiossl.errors.ConfigError` that names the file: data dirs
with ``segments``, ``wav.scp`` pipe commands or archive offsets, and formats libsndfile does
not read (use ``data.backend: default`` for those); audio at another rate than
``data.sample_rate`` (fairseq2 0.8.1 has no resampler in its data pipeline) is a
:class:`~audiossl.errors.DataError` when it is read.

fairseq2 is imported lazily: without it the backend asks for ``pip install 'audiossl[fairseq2]'``.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from audiossl.audio.frontends import frontend_config
from audiossl.audio.io import SOUNDFILE_EXTENSIONS, select_channels
from audiossl.data.backends.base import DataBackend, register_data_backend
from audiossl.data.backends.default import TrainData
from audiossl.data.config import DataConfig
from audiossl.data.dataset import AudioDataset, Batch
from audiossl.data.kaldi import DataDir, read_entries
from audiossl.data.targets import batch_targets
from audiossl.errors import ConfigError, DataError

_INSTALL_HINT = "pip install 'audiossl[fairseq2]'"

#: Fbank options fairseq2's converter fixes (Kaldi defaults, dither 0); only these may be set.
_FAIRSEQ2_FBANK_FREE = frozenset({"sample_rate", "num_mel_bins"})


def import_fairseq2() -> Any:
    """fairseq2's data modules ``(data_pipeline, audio)``; a :class:`ConfigError` when it is not installed."""
    try:
        from fairseq2.data import audio, data_pipeline
    except ImportError as error:  # also fairseq2n's missing native library
        raise ConfigError(f"data.backend: fairseq2 needs fairseq2: {_INSTALL_HINT} ({error})") from None
    return data_pipeline, audio


def check_fairseq2_fbank(config: DataConfig, frontend_config: Any | None) -> None:
    """``data.fairseq2_fbank`` is possible: an ``fbank`` front-end whose options fairseq2 can compute."""
    if config.frontend != "fbank" or frontend_config is None:
        raise ConfigError(
            f"data.fairseq2_fbank computes Kaldi fbank: it needs data.frontend: fbank, not {config.frontend!r}"
        )
    defaults = type(frontend_config)(sample_rate=frontend_config.sample_rate)
    differing = [
        field.name
        for field in dataclasses.fields(frontend_config)
        if field.name not in _FAIRSEQ2_FBANK_FREE
        and getattr(frontend_config, field.name) != getattr(defaults, field.name)
    ]
    if differing:
        raise ConfigError(
            f"data.fairseq2_fbank: fairseq2's fbank has Kaldi's default options; only num_mel_bins may change, "
            f"but data.frontend_config sets {', '.join(differing)} (set data.fairseq2_fbank: false)"
        )


class Fairseq2TrainData(TrainData):
    """:class:`TrainData` whose audio is read (and optionally turned into fbank) by fairseq2.

    Same constructor, iteration, ``state_dict``/``load_state_dict`` and batches as
    :class:`TrainData`; with ``config.fairseq2_fbank`` every batch also carries ``features``
    (B, F, C) and ``feature_lengths`` (B,), which :class:`~audiossl.models.InputPipeline`
    normalises instead of running its own front-end.
    """

    def __init__(self, data_dirs: Sequence[str | Path], config: DataConfig, **options: Any):
        import_fairseq2()
        for data_dir in data_dirs:  # before TrainData reads durations (which may run pipes)
            check_data_dir(DataDir.load(data_dir))
        super().__init__(data_dirs, config, **options)

    def _build_loader(self, config: DataConfig, *, seed: int, pin_memory: bool) -> Any:
        data_pipeline, audio = import_fairseq2()
        fbank_bins = None
        if config.fairseq2_fbank:
            settings = frontend_config(config.frontend, {**config.frontend_config, "sample_rate": config.sample_rate})
            check_fairseq2_fbank(config, settings)
            fbank_bins = settings.num_mel_bins
        return _Fairseq2Loader(self, data_pipeline, audio, config, fbank_bins, pin_memory)


def check_data_dir(data: DataDir) -> None:
    """Refuse what the fairseq2 backend cannot read, naming the file (and the wav.scp line)."""
    base = data.path if data.path is not None else Path()
    hint = "use data.backend: default"
    if data.segments is not None:
        raise ConfigError(f"the fairseq2 backend reads whole files, not segments: {hint}", base / "segments")
    wav_scp = base / "wav.scp"
    for utt_id, value in data.wav_scp.items():
        value = value.strip()
        where = f"utterance {utt_id!r}: {value!r}"
        if value.endswith("|"):
            problem = "does not run wav.scp pipes"
        elif Path(value).suffix.lower() not in SOUNDFILE_EXTENSIONS:
            problem = "reads plain files of the formats libsndfile knows (wav, flac, ogg, ...) only"
        else:
            continue
        line = next((entry.line for entry in read_entries(wav_scp) if entry.key == utt_id), None)
        raise ConfigError(f"the fairseq2 backend {problem} ({where}): {hint}", wav_scp, line)


class _Fairseq2Loader:
    """Re-iterable: each iteration builds a pipeline over the sampler's remaining batches of the epoch."""

    def __init__(
        self,
        owner: Fairseq2TrainData,
        data_pipeline: Any,
        audio: Any,
        config: DataConfig,
        fbank_bins: int | None,
        pin_memory: bool,
    ):
        self.owner = owner
        self.data_pipeline = data_pipeline
        self.audio = audio
        self.sample_rate = config.sample_rate
        self.channel = config.channel
        self.parallel = max(1, config.num_workers)
        self.fbank_bins = fbank_bins
        self.pin_memory = pin_memory
        # Index in the kept list -> (dataset, index in that dataset), as Subset(ConcatDataset) maps it.
        self.starts = [0]
        for dataset in owner.datasets:
            self.starts.append(self.starts[-1] + len(dataset))
        self.kept = list(owner.dataset.indices)

    def _locate(self, index: int) -> tuple[AudioDataset, int]:
        flat = self.kept[index]
        which = bisect.bisect_right(self.starts, flat) - 1
        return self.owner.datasets[which], flat - self.starts[which]

    def _examples(self, batches: list[list[int]]) -> list[dict[str, Any]]:
        """One dict per utterance, in batch order; ``last`` = 1.0 closes a batch."""
        examples = []
        for batch in batches:
            for position, index in enumerate(batch):
                dataset, local = self._locate(index)
                offset, duration = dataset.crop_window(local)
                utt_id = dataset.ids[local]
                base = dataset.data.path if dataset.data.path is not None else Path()
                examples.append(
                    {
                        "audio": str(Path(dataset.data.wav_scp[utt_id].strip()).absolute()),
                        "id": utt_id,
                        "offset": float(offset),
                        "duration": -1.0 if duration is None else float(duration),
                        "last": 1.0 if position == len(batch) - 1 else 0.0,
                        "wav_scp": str(base / "wav.scp"),
                    }
                )
        return examples

    def __iter__(self) -> Iterator[Batch]:
        batches = list(self.owner.sampler)  # from the sampler's (restored) position to the end of the epoch
        if not batches:
            return
        pipeline = self._pipeline(self._examples(batches))
        yield from pipeline

    def _pipeline(self, examples: list[dict[str, Any]]) -> Any:
        dp, audio = self.data_pipeline, self.audio
        builder = dp.read_sequence(examples)
        builder.map(dp.FileMapper(), selector="audio", num_parallel_calls=self.parallel)
        builder.map(audio.AudioDecoder(dtype=torch.float32), selector="audio.data", num_parallel_calls=self.parallel)
        builder.map(self._window)
        if self.fbank_bins is not None:
            converter = audio.WaveformToFbankConverter(
                num_mel_bins=self.fbank_bins, waveform_scale=1.0, keep_waveform=True, dtype=torch.float32
            )
            builder.map(converter, selector="audio", num_parallel_calls=self.parallel)
        builder.dynamic_bucket(1.0, _closes_batch)
        builder.map(self._collate)
        builder.prefetch(2 * self.parallel)
        return builder.and_return()

    def _window(self, example: dict[str, Any]) -> dict[str, Any]:
        """Decoded file -> the epoch's window as mono float32 with its own storage: ``audio`` = (1, T)."""
        decoded = example["audio"]["data"]
        rate = decoded["sample_rate"]
        name = f"{example['audio']['path']} (utterance {example['id']!r}, {example['wav_scp']})"
        if int(rate) != rate or int(rate) != self.sample_rate:
            raise DataError(
                f"{name} is at {rate:g} Hz but data.sample_rate is {self.sample_rate}: the fairseq2 backend does not "
                "resample; use data.backend: default (resamples) or resample the corpus"
            )
        samples = decoded["waveform"]  # (T,) mono or (T, C)
        if samples.dim() == 2:  # data.channel, or the mixdown (logged once) as audiossl.audio.io does
            samples = select_channels(samples.T, name, channel=self.channel)  # (T,)
        elif self.channel not in (None, 0):
            samples = select_channels(samples.unsqueeze(0), name, channel=self.channel)  # refused: mono
        frames = samples.shape[0]
        if frames == 0:
            raise DataError(f"{name} contains no audio samples (zero length)")
        # The same sample arithmetic as audiossl.audio.io (span of [start, end) seconds), then the crop.
        start, duration = example["offset"], example["duration"]
        first = round(start * rate)
        last = frames if duration < 0 else max(first + 1, min(round((start + duration) * rate), frames))
        if first >= frames:
            raise DataError(f"{name}: window start {start:.3f} s is past the end ({frames / rate:.3f} s)")
        window = samples[first:last]
        if duration >= 0:
            window = window[: round(duration * rate)]
        if not bool(torch.isfinite(window).all()):
            raise DataError(f"{name} contains NaN/Inf samples")
        # A clone: fairseq2 0.8.1's fbank converter ignores a view's storage offset.
        waveform = window.clone().unsqueeze(0)  # (1, T)
        return {**example, "audio": {"waveform": waveform, "sample_rate": rate}}

    def _collate(self, examples: list[dict[str, Any]]) -> Batch:
        """Pad one batch: waveforms (B, T), lengths (B,), offsets (B,), and features (B, F, C) when computed."""
        signals = [example["audio"]["waveform"][0] for example in examples]
        lengths = torch.tensor([signal.shape[0] for signal in signals], dtype=torch.int64)  # (B,)
        waveforms = torch.zeros(len(signals), int(lengths.max()), dtype=torch.float32)  # (B, T)
        for row, signal in enumerate(signals):
            waveforms[row, : signal.shape[0]] = signal
        offsets = torch.tensor([example["offset"] for example in examples], dtype=torch.float64)  # (B,)
        features = feature_lengths = None
        if self.fbank_bins is not None:
            fbanks = [example["audio"]["fbank"] for example in examples]  # [(F_i, C)]
            feature_lengths = torch.tensor([fbank.shape[0] for fbank in fbanks], dtype=torch.int64)  # (B,)
            features = torch.zeros(len(fbanks), int(feature_lengths.max()), self.fbank_bins)  # (B, F, C)
            for row, fbank in enumerate(fbanks):
                features[row, : fbank.shape[0]] = fbank
        ids = [example["id"] for example in examples]
        sources = self.owner.datasets[0].targets  # the objective's targets, as AudioDataset attaches them
        whole = [example["duration"] < 0 for example in examples]
        targets, target_lengths = batch_targets(sources, ids, offsets.tolist(), lengths.tolist(), whole)
        batch = Batch(ids, waveforms, lengths, {}, offsets, features, feature_lengths, targets, target_lengths)
        return _pinned(batch) if self.pin_memory else batch


def _closes_batch(example: dict[str, Any]) -> float:
    return example["last"]


def _pinned(batch: Batch) -> Batch:
    def pin(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.pin_memory()

    return Batch(
        batch.ids,
        pin(batch.waveforms),
        pin(batch.lengths),
        batch.labels,
        batch.offsets,
        pin(batch.features),
        pin(batch.feature_lengths),
        batch.targets,
        batch.target_lengths,
    )


def _check(config: DataConfig, frontend_config: Any | None) -> None:
    if config.fairseq2_fbank:
        check_fairseq2_fbank(config, frontend_config)


register_data_backend(
    DataBackend(
        name="fairseq2",
        create=Fairseq2TrainData,
        check=_check,
        description="fairseq2's C++ data pipeline (plain audio files; pip install 'audiossl[fairseq2]')",
    )
)
