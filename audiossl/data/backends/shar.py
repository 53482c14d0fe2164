"""The ``shar`` data backend: streams lhotse Shar shards (``audiossl data export-shar``) into training batches.

The data "dirs" are Shar export dirs. Every process (rank) runs ``max(1, data.num_workers)``
streams (DataLoader workers); stream ``s = rank * workers + worker`` of ``S`` reads, each epoch,
the shards ``order[s::S]`` of a shard order shuffled from ``(seed, epoch)`` (with fewer shards
than streams, every stream reads every shard and keeps the utterances at positions ``s (mod S)``).
So the streams of an epoch are disjoint and together cover every utterance once. Inside a
stream lhotse's :class:`~lhotse.dataset.sampling.DynamicBucketingSampler` shuffles through a
buffer and forms length-bucketed batches under ``data.max_seconds_per_batch`` of *padded* audio
(lhotse's ``max_duration`` counts longest x count, as the default sampler does), with bucket
boundaries taken from the duration quantiles in ``shar_index.json`` and seeds from
``(seed, epoch, stream)``. Crops to ``data.max_utt_seconds`` use the default backend's windows.

Exactness contract (tested in tests/data/shar): for a seed the batches of a stream are a pure
function of ``(seed, epoch, rank, world_size, num_workers)``; an epoch yields every kept
utterance exactly once over all ranks and workers (the same set as the default loader);
:meth:`SharTrainData.state_dict` counts the batches each worker stream handed to training, and
:meth:`~SharTrainData.load_state_dict` makes each stream skip exactly those (it re-reads, without
decoding, the skipped part), so a resumed epoch yields exactly the batches, with the same
contents, that the interrupted one had not yet yielded. The interleaving of workers' batches
after a resume may differ (the DataLoader restarts at worker 0); the global batch index that
seeds per-batch randomness is that of the stream position, so it does not change.
With ``world_size > 1`` each process's position is its own: the engine saves every process's
state (``rank_states``) and hands each its own back on resume; a process handed another rank's
mid-epoch state waits for its own and refuses to stream without it (a checkpoint from another
process count resumes at an epoch boundary only). Changing ``num_workers`` mid-epoch is refused.
"""

from __future__ import annotations

import logging
import random
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from audiossl.data.backends.base import DataBackend, register_data_backend
from audiossl.data.config import DataConfig
from audiossl.data.dataset import Batch
from audiossl.data.shar import AUDIO_FIELD, SharIndex
from audiossl.data.targets import batch_targets
from audiossl.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Cuts a stream holds (encoded audio in memory) to shuffle and bucket from (lhotse's ``buffer_size``).
BUFFER = 2000


def crop_window(
    seed: int, epoch: int, utt: str, seconds: float, max_seconds: float | None
) -> tuple[float, float | None]:
    """The default backend's window of an utterance in an epoch: (offset, duration) seconds; (0, None) = whole."""
    if max_seconds is None or seconds <= max_seconds:
        return 0.0, None
    return random.Random(f"{seed}:{epoch}:{utt}").uniform(0.0, seconds - max_seconds), max_seconds


class SharCorpus:
    """One Shar export as the training stack sees a dataset: extremes of its durations, its targets."""

    def __init__(self, index: SharIndex, config: DataConfig):
        self.index = index
        self.sample_rate = config.sample_rate
        self.max_seconds = config.max_utt_seconds
        shortest = index.shortest()[1]
        longest = index.longest
        if self.max_seconds is not None:
            shortest, longest = min(shortest, self.max_seconds), min(longest, self.max_seconds)
        #: The shortest and longest (cropped) durations only: the utterances are never all in memory.
        self.durations = (shortest, longest)
        self.targets: dict[str, Any] = {}

    def set_targets(self, sources: dict[str, Any]) -> None:
        """The objective's target sources, attached to every batch (as AudioDataset does)."""
        self.targets = dict(sources)


class _Streams(IterableDataset):
    """The worker streams of one rank for one epoch; yields (batch, worker, position in the worker's stream)."""

    def __init__(self, owner: SharTrainData, epoch: int, skip: Sequence[int], limit: int | None = None):
        self.corpora = owner.datasets
        self.config = owner.config
        self.seed, self.epoch, self.skip, self.limit = owner.seed, epoch, list(skip), limit
        self.rank, self.world_size, self.workers, self.shuffle = (
            owner.rank,
            owner.world_size,
            owner.workers,
            owner.shuffle,
        )
        self.bins = owner.bins

    def __iter__(self) -> Iterator[tuple[Batch, int, int]]:
        from lhotse import CutSet
        from lhotse.dataset.sampling import DynamicBucketingSampler

        info = get_worker_info()
        worker = 0 if info is None else info.id
        stream, streams = self.rank * self.workers + worker, self.world_size * self.workers
        shards = [(c, s) for c, corpus in enumerate(self.corpora) for s in range(corpus.index.num_shards)]
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}:shards").shuffle(shards)
        if len(shards) >= streams:
            mine, stride = shards[stream::streams], 1
        else:
            mine, stride = shards, streams
        if not mine:
            return
        fields = {
            "cuts": [self.corpora[c].index.file("cuts", s) for c, s in mine],
            AUDIO_FIELD: [self.corpora[c].index.file(AUDIO_FIELD, s) for c, s in mine],
        }
        cuts = CutSet.from_shar(fields=fields)
        max_seconds, minimum = self.config.max_utt_seconds, self.config.min_utt_seconds
        seed, epoch = self.seed, self.epoch

        def kept(item: tuple[int, Any]) -> bool:
            position, cut = item
            return position % stride == stream % stride and min(cut.duration, max_seconds or cut.duration) >= minimum

        def cropped(cut: Any) -> Any:
            seconds = cut.duration if max_seconds is None else min(cut.duration, max_seconds)
            return cut if seconds == cut.duration else _with_duration(cut, seconds)

        selected = CutSet(_Selected(cuts, kept)).map(cropped)
        sampler = DynamicBucketingSampler(
            selected,
            max_duration=self.config.max_seconds_per_batch,
            duration_bins=self.bins or None,
            num_buckets=len(self.bins) + 1 if self.bins else 1,
            shuffle=self.shuffle,
            drop_last=False,
            buffer_size=BUFFER,
            world_size=1,
            rank=0,
            seed=random.Random(f"{seed}:{epoch}:{stream}").randrange(2**31),
        )
        skip = self.skip[worker] if worker < len(self.skip) else 0
        for position, batch_cuts in enumerate(sampler):
            if self.limit is not None and position >= self.limit:
                return
            if position < skip:
                continue
            yield self._batch(list(batch_cuts)), worker, position

    def _batch(self, cuts: list[Any]) -> Batch:
        ids, signals, offsets, whole = [], [], [], []
        rate = self.config.sample_rate
        for cut in cuts:
            offset, duration = crop_window(
                self.seed, self.epoch, cut.id, cut.recording.duration, self.config.max_utt_seconds
            )
            samples = _decode(cut, rate, self.config.channel, offset, duration)  # (T,)
            ids.append(cut.id)
            signals.append(samples)
            offsets.append(offset)
            whole.append(duration is None)
        lengths = torch.tensor([signal.shape[0] for signal in signals], dtype=torch.int64)  # (B,)
        waveforms = torch.zeros(len(signals), int(lengths.max()), dtype=torch.float32)  # (B, T)
        for row, signal in enumerate(signals):
            waveforms[row, : signal.shape[0]] = signal
        targets, target_lengths = batch_targets(self.corpora[0].targets, ids, offsets, lengths.tolist(), whole)
        offsets_t = torch.tensor(offsets, dtype=torch.float64)  # (B,)
        return Batch(ids, waveforms, lengths, {}, offsets_t, targets=targets, target_lengths=target_lengths)


class _Selected:
    """Lazy filter over enumerated cuts (the position in the stream decides the stream it belongs to)."""

    is_lazy = True

    def __init__(self, cuts: Any, keep: Any):
        self.cuts, self.keep = cuts, keep

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in enumerate(self.cuts):
                if self.keep(item):
                    yield item[1]
        except (OSError, EOFError, ValueError, KeyError, tarfile.TarError) as error:
            raise DataError(f"cannot read a Shar shard (missing or corrupt): {error}") from None


def _with_duration(cut: Any, seconds: float) -> Any:
    """The cut as the sampler should measure it (its cropped length); the audio stays whole."""
    from lhotse.utils import fastcopy

    return fastcopy(cut, duration=seconds)


def _decode(cut: Any, sample_rate: int, channel: int | None, offset: float, duration: float | None) -> torch.Tensor:
    """The window ``[offset, offset + duration)`` of an utterance's in-memory Shar audio: mono float32 (T,).

    The encoded member is read by :func:`audiossl.audio.io.load_audio`, as the default loader reads
    files: the same span arithmetic, channel handling and resampling, decoding only the window.
    """
    from audiossl.audio.io import load_audio
    from audiossl.errors import AudioError

    name = f"utterance {cut.id!r} (Shar)"
    source = cut.recording.sources[0]
    data = source.source if source.type == "memory" else None
    if not isinstance(data, bytes):
        raise DataError(f"{name}: the audio is not in the shard (source type {source.type!r})")
    end = None if duration is None else offset + duration
    try:
        waveform, _ = load_audio(data, sample_rate, start=offset, end=end, name=name, channel=channel)  # (T,)
    except AudioError as error:
        raise DataError(f"cannot decode the audio from its Shar shard: {error}") from None
    return waveform if duration is None else waveform[: round(duration * sample_rate)]


class SharTrainData:
    """:class:`~audiossl.data.backends.default.TrainData`'s interface over Shar exports (see the module doc)."""

    def __init__(
        self,
        data_dirs: Sequence[str | Path],
        config: DataConfig,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        pin_memory: bool = False,
    ):
        if not data_dirs:
            raise DataError("no data dir given")
        self.config = config
        self.datasets = [SharCorpus(SharIndex.load(path), config) for path in data_dirs]
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.pin_memory = pin_memory
        self.workers = max(1, config.num_workers)
        indexes = [corpus.index for corpus in self.datasets]
        merged = SharIndex(indexes[0].path, {"shards": [s for index in indexes for s in index.info["shards"]]})
        self.bins = merged.duration_bins(config.num_buckets, config.max_utt_seconds) if config.num_buckets > 1 else []
        if max(corpus.durations[1] for corpus in self.datasets) < config.min_utt_seconds:
            where = ", ".join(str(path) for path in data_dirs)
            raise DataError(f"no utterance of at least data.min_utt_seconds={config.min_utt_seconds} s in {where}")
        self.epoch = 0
        self.done = [0] * self.workers
        self.awaiting_own_state = False
        """True after loading another rank's mid-epoch state until this rank's own arrives."""

    @property
    def batches_done(self) -> int:
        """Batches of this epoch handed to training (all workers)."""
        return sum(self.done)

    def __len__(self) -> int:
        """An estimate of this process's batches per epoch (full batches of padded seconds; dynamic in fact)."""
        return max(1, int(np.ceil(self.total_seconds / self.world_size / self.config.max_seconds_per_batch)))

    @property
    def total_seconds(self) -> float:
        """Seconds of audio in one epoch over all processes (before cropping; from the index)."""
        return float(sum(corpus.index.info["seconds"] for corpus in self.datasets))

    def shortest(self) -> tuple[str, float]:
        """The shortest utterance: (id, seconds after cropping)."""
        utt, seconds = min((corpus.index.shortest() for corpus in self.datasets), key=lambda pair: pair[1])
        return utt, seconds if self.config.max_utt_seconds is None else min(seconds, self.config.max_utt_seconds)

    def state_dict(self) -> dict[str, Any]:
        """Epoch and the batches each worker stream handed to training in it."""
        return {
            "backend": "shar",
            "epoch": self.epoch,
            "position": self.batches_done,
            "done": list(self.done),
            "seed": self.seed,
            "world_size": self.world_size,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after the batches a :meth:`state_dict` counted (ValueError when that cannot be exact)."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"data state has seed {state['seed']}, this run has seed {self.seed}")
        position = int(state.get("position", 0))
        done = [int(n) for n in state.get("done", [])]
        if position and state.get("backend") != "shar":
            raise ValueError("the checkpoint was saved mid-epoch by another data backend")
        if position and len(done) != self.workers:
            raise ValueError(
                f"saved mid-epoch with {len(done)} data workers, now {self.workers}: keep data.num_workers"
            )
        saved_world = int(state.get("world_size", 1))
        if position and saved_world != self.world_size:
            raise ValueError(
                f"saved mid-epoch by {saved_world} process(es), now {self.world_size}: a shar stream position "
                "belongs to one rank of one process count (resume at an epoch boundary, or keep the process count)"
            )
        self.epoch = int(state["epoch"])
        if position and int(state.get("rank", 0)) != self.rank:
            self.awaiting_own_state = True  # another rank's position: this rank's own must follow (rank_states)
            self.done = [0] * self.workers
            return
        self.awaiting_own_state = False
        self.done = done if position else [0] * self.workers

    def _loader(self, epoch: int, skip: Sequence[int], limit: int | None = None) -> DataLoader:
        streams = _Streams(self, epoch, skip, limit)
        return DataLoader(streams, batch_size=None, num_workers=self.config.num_workers, pin_memory=self.pin_memory)

    def __iter__(self) -> Iterator[tuple[Batch, int, int]]:
        """Forever: (batch, epoch, global batch index in the epoch)."""
        if self.awaiting_own_state:
            raise DataError(
                f"rank {self.rank}: the checkpoint holds another rank's mid-epoch shar position and not this "
                "rank's own (saved without per-process rank_states); resume from a checkpoint saved at an epoch "
                "boundary or by this audiossl version"
            )
        while True:
            for batch, worker, position in self._loader(self.epoch, self.done):
                self.done[worker] = position + 1
                yield batch, self.epoch, (position * self.workers + worker) * self.world_size + self.rank
            self.epoch += 1
            self.done = [0] * self.workers

    def epoch_batches(self, limit: int | None = None) -> Iterator[tuple[Batch, int]]:
        """One pass over the current epoch's batches from the start (validation): (batch, global index)."""
        for count, (batch, worker, position) in enumerate(self._loader(self.epoch, [0] * self.workers)):
            if limit is not None and count >= limit:
                break
            yield batch, (position * self.workers + worker) * self.world_size + self.rank


def check(config: DataConfig, frontend_config: Any | None) -> None:
    """Refuse the settings the shar backend cannot serve, before any data is read."""
    if config.normalize == "global" and config.global_stats is None:
        raise ConfigError(
            "data.backend: shar needs data.global_stats with data.normalize: global (the statistics are computed "
            "from data dirs: run `audiossl features stats` on the data dir you exported), or data.normalize: utterance"
        )
    if config.fairseq2_fbank:
        raise ConfigError("data.fairseq2_fbank needs data.backend: fairseq2")
    if config.allow_pipes:
        raise ConfigError(
            "data.allow_pipes has no effect with data.backend: shar (pipes run at export: export-shar --allow-pipes)"
        )


register_data_backend(
    DataBackend(
        name="shar",
        create=SharTrainData,
        check=check,
        description="lhotse Shar shards streamed (audiossl data export-shar; shuffle buffer, bucketing)",
    )
)
