"""The ``default`` data backend: one or more data dirs -> length-bucketed, sharded, resumable stream of batches.

:class:`TrainData` iterates forever over epochs and yields every batch with its epoch and its
index in the epoch's *global* list of batches (``position * world_size + rank``). That index
identifies a batch independently of how the batches are split among processes, so per-batch
randomness (masks, SpecAugment) seeded from ``(seed, epoch, index)`` is the same whether the
batches are spread over N processes or accumulated in one, and the same after a resume.

Data order depends only on the seed, the epoch and the position: the sampler is seeded, crops
are seeded per (seed, epoch, utterance) inside :class:`~audiossl.data.dataset.AudioDataset`,
and the DataLoader gets its own generator, so it never draws from torch's global random state
(which would make the order depend on when an iterator was created).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from audiossl.data.backends.base import DataBackend, register_data_backend
from audiossl.data.config import DataConfig
from audiossl.data.dataset import AudioDataset, Batch, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.errors import DataError

logger = logging.getLogger(__name__)


class TrainData:
    """Batches of ``data_dirs`` for this process (rank ``rank`` of ``world_size``).

    Utterances shorter than ``config.min_utt_seconds`` (after cropping to ``max_utt_seconds``)
    are skipped; an empty data dir, or one with nothing left, is a :class:`DataError`.
    """

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
        self.datasets = []
        for data_dir in data_dirs:
            dataset = AudioDataset(
                data_dir,
                sample_rate=config.sample_rate,
                max_seconds=config.max_utt_seconds,
                crop_seed=seed,
                allow_pipes=True if config.allow_pipes else None,  # false: the process policy decides
                channel=config.channel,
            )
            if len(dataset) == 0:
                raise DataError("data dir has no utterances (wav.scp is empty)", data_dir)
            self.datasets.append(dataset)
        all_ids = [utt for dataset in self.datasets for utt in dataset.ids]
        all_durations = [seconds for dataset in self.datasets for seconds in dataset.durations]
        keep = [i for i, seconds in enumerate(all_durations) if seconds >= config.min_utt_seconds]
        if not keep:
            where = ", ".join(str(d) for d in data_dirs)
            raise DataError(f"no utterance of at least data.min_utt_seconds={config.min_utt_seconds} s in {where}")
        if len(keep) < len(all_durations):
            logger.info(
                "skipping %d of %d utterances shorter than %g s",
                len(all_durations) - len(keep),
                len(all_durations),
                config.min_utt_seconds,
            )
        self.ids = [all_ids[i] for i in keep]
        self.durations = [all_durations[i] for i in keep]
        self.dataset = Subset(ConcatDataset(self.datasets), keep)
        self.world_size = world_size
        self.rank = rank
        self.sampler = BucketBatchSampler(
            self.durations,
            config.max_seconds_per_batch,
            num_buckets=config.num_buckets,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        self.loader = self._build_loader(config, seed=seed, pin_memory=pin_memory)
        self.epoch = 0
        self.batches_done = 0

    def _build_loader(self, config: DataConfig, *, seed: int, pin_memory: bool) -> Any:
        """The iterable of this epoch's batches (from the sampler's position); other backends override it."""
        return DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            collate_fn=collate,
            num_workers=config.num_workers,
            pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        """Batches per epoch on this process."""
        return len(self.sampler)

    @property
    def total_seconds(self) -> float:
        """Seconds of (cropped) audio in one epoch over all processes."""
        return float(sum(self.durations))

    def shortest(self) -> tuple[str, float]:
        """The shortest utterance kept: (id, seconds after cropping)."""
        index = min(range(len(self.durations)), key=self.durations.__getitem__)
        return self.ids[index], self.durations[index]

    def state_dict(self) -> dict[str, Any]:
        """Epoch and batches finished in it (not the prefetched ones), for a checkpoint."""
        return self.sampler.state_dict(batches_done=self.batches_done)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next batch is batch ``position`` of epoch ``epoch``."""
        self.sampler.load_state_dict(state)
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["position"])

    def _set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        for dataset in self.datasets:
            dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Batch, int, int]]:
        """Forever: (batch, epoch, global batch index in the epoch)."""
        while True:
            self._set_epoch(self.epoch)
            for batch in self.loader:
                index = self.batches_done * self.world_size + self.rank
                self.batches_done += 1
                yield batch, self.epoch, index
            self.epoch += 1
            self.batches_done = 0

    def epoch_batches(self, limit: int | None = None) -> Iterator[tuple[Batch, int]]:
        """One pass over the current epoch's batches from the start (validation): (batch, global index)."""
        self._set_epoch(self.epoch)
        self.sampler.load_state_dict({"epoch": self.epoch, "position": 0})  # an earlier pass may have stopped early
        for position, batch in enumerate(self.loader):
            if limit is not None and position >= limit:
                break
            yield batch, position * self.world_size + self.rank


register_data_backend(
    DataBackend(name="default", create=TrainData, description="torch DataLoader over AudioDataset (any data dir)")
)
