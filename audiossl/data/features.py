"""Front-end features of a data dir: corpus statistics for normalisation, and one utterance for a look.

These walk a Kaldi data dir (dataset, length-bucketing sampler), so they live here, above
:mod:`audiossl.audio`, which computes features of waveforms it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.audio.frontends import FRONTENDS, create_frontend
from audiossl.audio.normalize import GlobalStats
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.data.shards import Shard, advance, check_parts, fingerprint, part_meta, run_jobs, split_range
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path

#: Utterances per chunk of :func:`compute_global_stats`: batches never span a chunk, shards split on chunks.
STATS_CHUNK = 64


def compute_global_stats(
    data_dir: str | Path,
    frontend_name: str = "fbank",
    frontend_config: object | None = None,
    *,
    batch_seconds: float = 200.0,
    sample_rate: int | None = None,
    progress: bool = True,
    num_workers: int = 0,
    channel: int | None = None,
    num_jobs: int = 1,
    chunk_size: int = STATS_CHUNK,
) -> GlobalStats:
    """Per-channel statistics of a front-end's features over every utterance of a Kaldi data dir.

    Utterances are read at the front-end's sample rate (``sample_rate`` overrides; 16 kHz for
    front-ends without one) in chunks of ``chunk_size`` consecutive utterances (Kaldi order),
    batched by length within a chunk so that a batch holds about ``batch_seconds`` of padded
    audio, and streamed through the front-end; only float64 sums are kept, one per chunk, and
    the chunks are added in order. ``num_jobs`` processes share the chunks; because a chunk's
    sums do not depend on who computes them and they are added in the same order, the result is
    bit-identical for any ``num_jobs`` and to :func:`merge_stats_parts` of shards
    (:func:`compute_stats_part`). ``channel``: which channel of multi-channel recordings (None:
    their mixdown), as in training. ``num_workers`` is accepted for compatibility and unused.
    """
    part = compute_stats_part(
        data_dir,
        frontend_name,
        frontend_config,
        batch_seconds=batch_seconds,
        sample_rate=sample_rate,
        progress=progress,
        channel=channel,
        num_jobs=num_jobs,
        chunk_size=chunk_size,
    )
    return part.total()


@dataclass
class StatsPart:
    """The per-chunk statistics of one shard (or of the whole data dir), in chunk order.

    ``meta``: the shard, its utterance range and the data dir's fingerprint (see
    :mod:`audiossl.data.shards`) plus the settings that must agree between shards.
    """

    meta: dict[str, Any]
    chunks: list[GlobalStats]
    frontend: str

    def total(self) -> GlobalStats:
        """The chunks' statistics added in order (the unsharded run's exact arithmetic)."""
        return reduce_chunks(self.chunks, self.frontend)

    def save(self, path: str | Path) -> None:
        """Write the part as ``.npz`` (atomically): per-chunk counts, sums, sums of squares, utterances."""
        channels = max((chunk.num_channels for chunk in self.chunks), default=0)
        sums = np.stack([_padded(chunk.sum, channels) for chunk in self.chunks]) if self.chunks else np.zeros((0, 0))
        squares = np.stack([_padded(chunk.sum_squares, channels) for chunk in self.chunks]) if self.chunks else sums
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle,
                meta=np.str_(json.dumps(self.meta, sort_keys=True)),
                frontend=np.str_(self.frontend),
                counts=np.array([chunk.count for chunk in self.chunks], dtype=np.int64),
                utterances=np.array([chunk.utterances for chunk in self.chunks], dtype=np.int64),
                sums=sums,
                squares=squares,
            )

    @classmethod
    def load(cls, path: str | Path) -> StatsPart:
        """A part written by :meth:`save`; anything else is a :class:`DataError` naming the file."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                frontend = str(data["frontend"])
                counts, utterances = data["counts"], data["utterances"]
                sums, squares = data["sums"].astype(np.float64), data["squares"].astype(np.float64)
        except (KeyError, ValueError, OSError) as error:
            raise DataError(f"not a statistics shard part (features stats --shard): {error}", path) from None
        chunks = [
            GlobalStats(int(counts[i]), sums[i].copy(), squares[i].copy(), int(utterances[i]), frontend)
            for i in range(len(counts))
        ]
        return cls(meta, chunks, frontend)


def _padded(values: np.ndarray, channels: int) -> np.ndarray:
    """A chunk without frames has no channels yet: zeros of the others' width."""
    return values if values.shape[0] == channels else np.zeros(channels)


def reduce_chunks(chunks: list[GlobalStats], frontend: str = "") -> GlobalStats:
    """Add per-chunk statistics in order, with GlobalStats.merge (elementwise float64 additions)."""
    total = GlobalStats(frontend=frontend)
    for chunk in chunks:
        total = total.merge(chunk)
    total.frontend = frontend
    return total


def compute_stats_part(
    data_dir: str | Path,
    frontend_name: str = "fbank",
    frontend_config: object | None = None,
    *,
    shard: Shard | str | None = None,
    batch_seconds: float = 200.0,
    sample_rate: int | None = None,
    progress: bool = True,
    channel: int | None = None,
    num_jobs: int = 1,
    chunk_size: int = STATS_CHUNK,
) -> StatsPart:
    """Per-chunk statistics of shard ``shard`` (``"I/N"``; None: every utterance); see :func:`compute_global_stats`."""
    if FRONTENDS.get(frontend_name).learnable:
        raise ConfigError(f"front-end {frontend_name!r} is learnable: its statistics change as it trains")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    shard = Shard.parse(shard)
    frontend = create_frontend(frontend_name, frontend_config)
    rate = sample_rate or getattr(frontend.config, "sample_rate", 16000)
    dataset = AudioDataset(data_dir, sample_rate=rate, channel=channel)
    block = shard.range(len(dataset), chunk_size)
    job = _StatsJob(str(data_dir), frontend_name, frontend_config, rate, channel, batch_seconds, chunk_size)
    tasks = split_range(block, max(1, num_jobs), chunk_size)
    results = run_jobs(
        job,
        [task for task in tasks if len(task)] or [block],
        num_jobs=num_jobs,
        desc="feature statistics",
        total=len(block),
        unit="utt",
        describe=lambda task: f"utterances {task.start}..{task.stop - 1} of {data_dir}",
        show_progress=progress,
    )
    settings = {"frontend": frontend_name, "config": repr(frontend.config), "sample_rate": rate, "chunk": chunk_size}
    meta = part_meta(shard, block, fingerprint(dataset.ids), **settings)
    return StatsPart(meta, [chunk for chunks in results for chunk in chunks], frontend_name)


@dataclass
class _StatsJob:
    """Per-chunk statistics of a range of utterances (picklable: it runs in a job process)."""

    data_dir: str
    frontend_name: str
    frontend_config: object | None
    sample_rate: int
    channel: int | None
    batch_seconds: float
    chunk_size: int

    def __call__(self, block: range) -> list[GlobalStats]:
        frontend = create_frontend(self.frontend_name, self.frontend_config).eval()
        dataset = AudioDataset(self.data_dir, sample_rate=self.sample_rate, channel=self.channel)
        durations = dataset.durations
        chunks = []
        for start in range(block.start, block.stop, self.chunk_size):
            indices = list(range(start, min(start + self.chunk_size, block.stop)))
            sampler = BucketBatchSampler([durations[i] for i in indices], self.batch_seconds, shuffle=False)
            chunk = GlobalStats(frontend=self.frontend_name)
            for batch_indices in sampler:
                batch = collate(dataset[[indices[i] for i in batch_indices]])
                with torch.no_grad():
                    features, frame_lengths = frontend(batch.waveforms, batch.lengths)  # (B, F, C), (B,)
                chunk = chunk.merge(_batch_stats(features, frame_lengths, self.frontend_name))
                advance(len(batch_indices))
            chunks.append(chunk)
        return chunks


def _batch_stats(features: torch.Tensor, frame_lengths: torch.Tensor, frontend: str) -> GlobalStats:
    """Sums of one batch's valid frames in float64, with numpy (single-threaded: the same bits in any job)."""
    lengths = frame_lengths.tolist()
    frames = np.concatenate([features[b, : lengths[b]].double().numpy() for b in range(len(lengths))])  # (N, C)
    return GlobalStats(int(frames.shape[0]), frames.sum(axis=0), np.square(frames).sum(axis=0), len(lengths), frontend)


def merge_stats_parts(parts: list[str | Path]) -> GlobalStats:
    """The statistics of a complete set of shard parts, exactly those of the unsharded run."""
    loaded = {str(path): StatsPart.load(path) for path in parts}
    ordered = check_parts([(path, part.meta) for path, part in loaded.items()], "feature statistics")
    chunks = [chunk for path, _ in ordered for chunk in loaded[path].chunks]
    return reduce_chunks(chunks, loaded[ordered[0][0]].frontend)


def utterance_features(
    data_dir: str | Path,
    frontend_name: str = "fbank",
    *,
    utt: str | None = None,
    sample_rate: int = 16000,
    frontend_config: object | None = None,
) -> tuple[str, torch.Tensor]:
    """Return ``(utt_id, features (F, C))`` of one utterance (the first when ``utt`` is None)."""
    dataset = AudioDataset(data_dir, sample_rate=sample_rate)
    ids = dataset.ids
    if not ids:
        raise DataError("data dir has no utterances", data_dir)
    if utt is None:
        index = 0
    elif utt in ids:
        index = ids.index(utt)
    else:
        raise DataError(f"utterance {utt!r} not found", Path(data_dir) / "wav.scp")
    batch = collate([dataset[index]])
    frontend = create_frontend(frontend_name, frontend_config).eval()
    with torch.no_grad():
        features, frame_lengths = frontend(batch.waveforms, batch.lengths)  # (1, F, C), (1,)
    return batch.ids[0], features[0, : int(frame_lengths[0])]
