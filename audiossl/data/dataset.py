"""A map-style dataset over a Kaldi data dir, and the collate function that pads a batch.

``AudioDataset[i]`` reads one utterance (mono float32, resampled) with the labels asked for;
``AudioDataset[[i, j, ...]]`` reads a list of them, so a batch sampler can be used either as a
``batch_sampler`` or as the ``sampler`` of a ``DataLoader(batch_size=None)``. ``collate`` turns
utterances into a zero-padded ``(B, T)`` batch with its lengths. Targets of an objective (frame
labels, utterance classes: :mod:`audiossl.data.targets`) are attached per utterance, cropped
with its waveform, and travel with the batch as ``batch.targets`` / ``batch.target_lengths``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from audiossl.data.kaldi import DataDir
from audiossl.data.targets import TargetSource, batch_targets, pad_targets
from audiossl.data.wav_scp import check_pipes, load_utterance, pipes_allowed, read_wav_scp_info
from audiossl.errors import DataError
from audiossl.progress import progress

logger = logging.getLogger(__name__)


@dataclass
class Utterance:
    """One utterance: its id, its waveform ``(T,)`` float32 and the requested labels."""

    id: str
    waveform: torch.Tensor
    labels: dict[str, str] = field(default_factory=dict)
    #: Where the waveform starts in the full utterance, in seconds (non-zero when cropped).
    offset: float = 0.0
    #: Targets of the (cropped) utterance by name (see :mod:`audiossl.data.targets`).
    targets: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Batch:
    """A padded batch: ``waveforms`` ``(B, T)`` float32 (zeros past each length), ``lengths`` ``(B,)`` int64.

    ``offsets`` (B,) float64: seconds from the start of each utterance to the start of its
    (cropped) waveform, so frame targets made for the full utterance can be cropped alike.

    ``features`` (B, F, C) float32 and ``feature_lengths`` (B,) int64: front-end features computed
    by the data loader (the fairseq2 backend with ``data.fairseq2_fbank``), zeros past each length;
    None when the front-end runs in the training process (the default). The waveforms are kept
    alongside, for objectives that make their own views of the audio.

    ``targets``: what an objective predicts, by name, attached by the data layer (cropped with
    the waveforms, at the encoder's token rate): frame labels (B, S) long with
    :data:`~audiossl.data.targets.IGNORE` past each item's ``target_lengths[name]`` (B,), or
    utterance targets (B,) / (B, T). Empty when the objective reads none.
    """

    ids: list[str]
    waveforms: torch.Tensor
    lengths: torch.Tensor
    labels: dict[str, list] = field(default_factory=dict)
    offsets: torch.Tensor | None = None
    features: torch.Tensor | None = None
    feature_lengths: torch.Tensor | None = None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    target_lengths: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with its tensors on ``device``."""
        features = None if self.features is None else self.features.to(device, non_blocking=non_blocking)
        feature_lengths = (
            None if self.feature_lengths is None else self.feature_lengths.to(device, non_blocking=non_blocking)
        )
        return Batch(
            self.ids,
            self.waveforms.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            self.labels,
            self.offsets,
            features,
            feature_lengths,
            {name: value.to(device, non_blocking=non_blocking) for name, value in self.targets.items()},
            {name: value.to(device, non_blocking=non_blocking) for name, value in self.target_lengths.items()},
        )

    def with_targets(
        self, sources: dict[str, TargetSource], *, max_seconds: float | None = None, sample_rate: int = 16000
    ) -> Batch:
        """The same batch with the targets of ``sources`` attached (for batches not made by :func:`collate`).

        An item counts as cropped when ``max_seconds`` is set and it is at least that long (the
        window), as :class:`AudioDataset` crops; ``offsets`` locate its crop.
        """
        window = None if max_seconds is None else round(max_seconds * sample_rate)
        lengths = self.lengths.cpu().tolist()
        whole = [window is None or samples < window for samples in lengths]
        offsets = [0.0] * len(lengths) if self.offsets is None else self.offsets.cpu().tolist()
        targets, target_lengths = batch_targets(sources, self.ids, offsets, lengths, whole)
        return dataclasses.replace(
            self, targets={**self.targets, **targets}, target_lengths={**self.target_lengths, **target_lengths}
        )


def collate(items: Sequence[Utterance]) -> Batch:
    """Zero-pad utterances into one batch; labels become lists in batch order."""
    if not items:
        raise ValueError("cannot collate an empty list of utterances")
    lengths = torch.tensor([item.waveform.shape[-1] for item in items], dtype=torch.int64)  # (B,)
    waveforms = torch.zeros(len(items), int(lengths.max()), dtype=torch.float32)  # (B, T)
    for row, item in enumerate(items):
        waveforms[row, : item.waveform.shape[-1]] = item.waveform
    labels = {name: [item.labels[name] for item in items] for name in items[0].labels}
    offsets = torch.tensor([item.offset for item in items], dtype=torch.float64)  # (B,)
    targets, target_lengths = {}, {}
    for name in items[0].targets:
        targets[name], target_lengths[name] = pad_targets([item.targets[name] for item in items])
    return Batch(
        [item.id for item in items],
        waveforms,
        lengths,
        labels,
        offsets,
        targets=targets,
        target_lengths=target_lengths,
    )


class AudioDataset(Dataset):
    """Utterances of a Kaldi data dir, read on demand.

    ``labels`` names the per-utterance tables to return: ``"spk"`` (utt2spk), ``"text"``, or
    any ``utt2<name>`` table as ``"<name>"``. Every requested table must cover every utterance.
    ``max_seconds`` crops longer utterances to a window of that length; the window's offset
    is drawn from ``(crop_seed, epoch, utterance id)`` so it is reproducible, and changes
    with :meth:`set_epoch`. Only the window is read from disk. ``wav.scp`` pipe commands are
    refused (:class:`~audiossl.data.wav_scp.PipeRefused`, here, naming the first one's line)
    unless ``allow_pipes`` or, when it is None, the process policy allows them
    (:mod:`audiossl.data.wav_scp`). ``channel``: None mixes multi-channel recordings down to
    mono (logged once per process), an index (0 = first) reads that channel only.
    """

    def __init__(
        self,
        data_dir: str | Path | DataDir,
        sample_rate: int = 16000,
        labels: Sequence[str] = (),
        allow_pipes: bool | None = None,
        max_seconds: float | None = None,
        *,
        crop_seed: int = 0,
        channel: int | None = None,
    ):
        self.data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
        self.sample_rate = sample_rate
        self.channel = channel
        check_pipes(self.data, allow_pipes)  # a refused pipe fails here, not later in a DataLoader worker
        self.allow_pipes = pipes_allowed(allow_pipes)  # decided once; workers get the decision with the dataset
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_seconds = max_seconds
        self.crop_seed = crop_seed
        self.epoch = 0
        self.ids = self.data.utterance_ids
        self.label_tables = {name: self._label_table(name) for name in labels}
        self.targets: dict[str, TargetSource] = {}
        self._full_durations: list[float] | None = None

    def set_targets(self, sources: dict[str, TargetSource]) -> None:
        """Attach these targets to every utterance read from now on (``Utterance.targets``, ``Batch.targets``)."""
        self.targets = dict(sources)

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Choose the crop windows of this epoch (only matters with ``max_seconds``)."""
        self.epoch = epoch

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance in dataset order, after cropping to ``max_seconds``.

        Taken from utt2dur, else segment spans, else utt2num_samples (at the native rate of
        the first recording), else audio headers; computed once.
        """
        full = self._durations()
        if self.max_seconds is None:
            return list(full)
        return [min(duration, self.max_seconds) for duration in full]

    def __getitem__(self, index: int | Sequence[int]) -> Utterance | list[Utterance]:
        if not isinstance(index, int) and isinstance(index, Sequence):
            return [self[i] for i in index]
        utt_id = self.ids[index]
        offset, duration = self.crop_window(index)
        waveform, _ = load_utterance(
            self.data,
            utt_id,
            self.sample_rate,
            self.allow_pipes,
            offset=offset,
            duration=duration,
            channel=self.channel,
        )  # (T,)
        if duration is not None:
            waveform = waveform[: round(duration * self.sample_rate)]
        labels = {name: table[utt_id] for name, table in self.label_tables.items()}
        targets = {
            name: source(utt_id, offset, waveform.shape[-1], duration is None) for name, source in self.targets.items()
        }
        return Utterance(utt_id, waveform, labels, offset, targets)

    def crop_window(self, index: int) -> tuple[float, float | None]:
        """(offset, duration) in seconds of utterance ``index``'s window this epoch; (0, None) = whole.

        Other loaders (the fairseq2 backend) read the same windows through this.
        """
        offset, duration = 0.0, None
        if self.max_seconds is not None and self._durations()[index] > self.max_seconds:
            spare = self._durations()[index] - self.max_seconds
            offset = random.Random(f"{self.crop_seed}:{self.epoch}:{self.ids[index]}").uniform(0.0, spare)
            duration = self.max_seconds
        return offset, duration

    def _table_path(self, name: str) -> Path | str:
        return self.data.path / name if self.data.path is not None else name

    def _label_table(self, name: str) -> dict[str, str]:
        """The table behind label ``name``; an error if it is missing or lacks an utterance."""
        if name == "spk":
            file, table = "utt2spk", self.data.utt2spk or None
        elif name == "text":
            file, table = "text", self.data.text
        else:
            file, table = f"utt2{name}", self.data.labels.get(name)
        if table is None:
            available = ["spk"] * bool(self.data.utt2spk) + ["text"] * (self.data.text is not None)
            available += sorted(self.data.labels)
            raise DataError(
                f"label {name!r} requested but {file} does not exist (available: {', '.join(available) or 'none'})",
                self._table_path(file),
            )
        missing = [utt for utt in self.ids if utt not in table]
        if missing:
            shown = ", ".join(repr(utt) for utt in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError(f"no {name!r} label for utterance(s) {shown}{more}", self._table_path(file))
        return table

    def _durations(self) -> list[float]:
        if self._full_durations is None:
            self._full_durations = self._compute_durations()
        return self._full_durations

    def _compute_durations(self) -> list[float]:
        data = self.data
        if data.utt2dur is not None and all(utt in data.utt2dur for utt in self.ids):
            return [data.utt2dur[utt] for utt in self.ids]
        segments = data.segments
        if segments is not None and all(segments[utt].end >= 0 for utt in self.ids):
            return [segments[utt].end - segments[utt].start for utt in self.ids]
        wav_scp = self._table_path("wav.scp")
        if data.utt2num_samples is not None and all(utt in data.utt2num_samples for utt in self.ids) and self.ids:
            first = segments[self.ids[0]].recording if segments is not None else self.ids[0]
            _, rate, _ = read_wav_scp_info(data.wav_scp[first], allow_pipes=self.allow_pipes, source=(wav_scp, None))
            return [data.utt2num_samples[utt] / rate for utt in self.ids]
        logger.info("no utt2dur in %s: reading audio headers (`audiossl data fix` writes utt2dur)", data.path)
        recording_seconds: dict[str, float] = {}
        durations = []
        for utt in progress(self.ids, desc="reading audio headers", unit="utt"):
            segment = segments[utt] if segments is not None else None
            recording = segment.recording if segment is not None else utt
            if segment is not None and segment.end >= 0:
                durations.append(segment.end - segment.start)
                continue
            if recording not in recording_seconds:
                if recording not in data.wav_scp:
                    raise DataError(f"recording {recording!r} (utterance {utt!r}) is not in wav.scp", wav_scp)
                length, rate, _ = read_wav_scp_info(
                    data.wav_scp[recording], allow_pipes=self.allow_pipes, source=(wav_scp, None)
                )
                recording_seconds[recording] = length / rate
            start = segment.start if segment is not None else 0.0
            durations.append(recording_seconds[recording] - start)
        return durations
