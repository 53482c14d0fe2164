"""Frame features of data dirs for clustering: streamed in bounded memory, or dumped once.

A *source* turns padded waveforms into frame features with their lengths, like a front-end:
a front-end name (``"mfcc"`` gives HuBERT's iteration-1 features, 13 MFCCs with deltas and
delta-deltas = 39 dimensions), any :class:`~audiossl.audio.base.Frontend`, or
:class:`EncoderFeatures`, the hidden states of one layer of an encoder (HuBERT's later
iterations cluster layer 6 or 9 of the previous model).

:func:`stream_features` reads a data dir batch by batch (length-bucketed, utterance order
shuffled per epoch) and yields each utterance's valid frames, so k-means can be fitted
without holding every feature; :func:`dump_features` writes a sample to ``.npy`` shards for
repeated fitting, and :class:`FeatureDump` streams them back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiossl.audio.frontends import FRONTENDS, create_frontend
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path, atomic_write, load_npy
from audiossl.progress import progress as progress_bar

#: What ``stream_features`` yields: utterance ids and each one's valid frames (F_i, D).
FeatureBatch = tuple[list[str], list[torch.Tensor]]

#: Options applied to a front-end named as a source (before the caller's own options).
SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {"mfcc": {"deltas": 2}}


class EncoderFeatures(nn.Module):
    """Hidden states of block ``layer`` of ``encoder`` (fed by ``frontend``) as frame features.

    ``forward(waveforms (B, T), lengths (B,)) -> (features (B, S, D), lengths (B,))``, like a
    front-end. ``frontend`` turns waveforms into the encoder's input; None for encoders that
    read waveforms themselves (waveform tokens). ``layer`` counts blocks from 1 (HuBERT's
    "layer 6" is ``layer=6``); negative values count from the last block (-1). Prefix (cls)
    tokens are dropped. Tokens must be one per time step: patch tokens with several frequency
    patches per step are refused. The trainer builds this from a checkpoint; here it takes
    modules.
    """

    def __init__(self, frontend: nn.Module | None, encoder: Encoder, layer: int):
        super().__init__()
        num_layers = int(encoder.num_layers)
        if layer == 0 or not -num_layers <= layer <= num_layers:
            raise ConfigError(f"layer must be in 1..{num_layers} (or -{num_layers}..-1), got {layer}")
        freq_patches = encoder.freq_patches
        if freq_patches != 1:
            raise ConfigError(
                f"the encoder has {freq_patches} frequency patches per time step, so its tokens are not frames; "
                "cluster an encoder with frame or waveform tokens (or patches spanning every frequency bin)"
            )
        self.encoder = encoder
        self.frontend = frontend
        self.layer = layer
        self.index = layer - 1 if layer > 0 else layer
        self.num_channels = int(encoder.dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames (tokens) produced for inputs of ``lengths`` samples (B,)."""
        frames = self.frontend.output_lengths(lengths) if self.frontend is not None else lengths
        return self.encoder.token_lengths(frames)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, frame_lengths = (waveforms, lengths) if self.frontend is None else self.frontend(waveforms, lengths)
        output = self.encoder(features, frame_lengths).without_prefix()
        return output.layers[self.index], output.lengths  # (B, S, D), (B,)


def resolve_source(
    source: str | nn.Module, sample_rate: int = 16000, options: Mapping[str, Any] | None = None
) -> nn.Module:
    """A feature module from a front-end name (with :data:`SOURCE_DEFAULTS`) or a module as is."""
    if isinstance(source, nn.Module):
        if options:
            raise ConfigError("front-end options apply to a named source only")
        return source

    spec = FRONTENDS.get(source)
    if spec.learnable:
        raise ConfigError(
            f"front-end {source!r} has learned weights; clustering its random initialisation means nothing: "
            "cluster a layer of a trained model instead (EncoderFeatures)"
        )
    overrides = dict(SOURCE_DEFAULTS.get(source, {}))
    if "sample_rate" in {field.name for field in dataclasses.fields(spec.config_class)}:
        overrides["sample_rate"] = sample_rate
    overrides.update(options or {})
    return create_frontend(source, **overrides)


def frame_rate(source: nn.Module, sample_rate: int = 16000) -> float:
    """Frames per second of ``source``, from its ``output_lengths`` 100 s apart (exact for any hop)."""
    probe = torch.tensor([100 * sample_rate, 200 * sample_rate])
    with torch.no_grad():
        frames = source.output_lengths(probe)
    return round(float(frames[1] - frames[0]) / 100.0, 6)


def stream_features(
    data_dir: str | Path | Sequence[str | Path],
    source: str | nn.Module,
    *,
    batch_seconds: float = 200.0,
    sample_fraction: float = 1.0,
    seed: int = 0,
    epoch: int = 0,
    sample_rate: int = 16000,
    device: str | torch.device = "cpu",
    options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Iterator[FeatureBatch]:
    """Yield ``(utterance ids, [features (F_i, D)])`` batch by batch over one or more data dirs.

    ``sample_fraction`` keeps that fraction of each dir's utterances (at least one), drawn
    once from ``seed`` (the same subset every epoch, as fairseq's ``learn_kmeans.py
    --percent``). Batches hold about ``batch_seconds`` of padded audio (length bucketing);
    their order, and the interleaving of several dirs, is shuffled from ``(seed, epoch)``.
    Features are computed under ``no_grad`` on ``device`` and returned there.
    """
    if not 0.0 < sample_fraction <= 1.0:
        raise ConfigError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
    dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    module = resolve_source(source, sample_rate, options).to(device).eval()
    plan: list[tuple[AudioDataset, list[int]]] = []
    for number, path in enumerate(dirs):
        dataset = AudioDataset(path, sample_rate=sample_rate)
        if len(dataset) == 0:
            raise DataError("data dir has no utterances", path)
        kept = sample_indices(len(dataset), sample_fraction, seed + number)
        durations = dataset.durations
        sampler = BucketBatchSampler([durations[i] for i in kept], batch_seconds, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        plan += [(dataset, [kept[i] for i in batch]) for batch in sampler]
    if len(dirs) > 1:  # interleave the dirs' batches
        order = np.random.default_rng([seed, epoch]).permutation(len(plan))
        plan = [plan[i] for i in order]
    batches: Iterable = plan
    if progress:
        batches = progress_bar(plan, desc=f"features (epoch {epoch})", total=len(plan), unit="batch")
    for dataset, indices in batches:
        batch = collate(dataset[indices]).to(device)
        with torch.no_grad():
            features, frame_lengths = module(batch.waveforms, batch.lengths)  # (B, F, D), (B,)
        frame_lengths = frame_lengths.tolist()
        yield batch.ids, [features[b, : frame_lengths[b]] for b in range(len(batch.ids))]


def chunk_features(
    dataset: AudioDataset,
    module: nn.Module,
    indices: Sequence[int],
    batch_seconds: float,
    device: str | torch.device = "cpu",
) -> Iterator[FeatureBatch]:
    """Features of ``dataset[indices]`` in length-bucketed batches formed within ``indices`` only.

    The batches depend on nothing but these utterances (no shuffling), so a chunk's features are
    the same in a sharded run as in an unsharded one (:mod:`audiossl.data.shards`).
    """
    durations = dataset.durations
    sampler = BucketBatchSampler([durations[i] for i in indices], batch_seconds, shuffle=False)
    for batch_indices in sampler:
        batch = collate(dataset[[indices[i] for i in batch_indices]]).to(device)
        with torch.no_grad():
            features, frame_lengths = module(batch.waveforms, batch.lengths)  # (B, F, D), (B,)
        frame_lengths = frame_lengths.tolist()
        yield batch.ids, [features[b, : frame_lengths[b]] for b in range(len(batch.ids))]


def sample_indices(count: int, fraction: float, seed: int) -> list[int]:
    """A sorted random subset of ``range(count)`` of ``round(fraction * count)`` items (at least one)."""
    if fraction >= 1.0:
        return list(range(count))
    size = max(1, round(fraction * count))
    return sorted(np.random.default_rng(seed).choice(count, size=size, replace=False).tolist())


def frames(batches: Iterable[FeatureBatch]) -> Iterator[torch.Tensor]:
    """Concatenate each batch's utterances into one ``(N, D)`` tensor of points (for k-means)."""
    for _, features in batches:
        if features:
            yield torch.cat(features)  # (N, D)


class FeatureDump:
    """Feature shards on disk (``shard-00000.npy`` ... + ``index.json``), read back lazily.

    A dump is complete once ``index.json`` exists (it is written last), so an interrupted
    dump is never mistaken for a finished one.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index = self.path / "index.json"
        if not index.is_file():
            raise DataError("not a complete feature dump (no index.json)", self.path)
        self.index = json.loads(index.read_text(encoding="utf-8"))

    @property
    def num_frames(self) -> int:
        return sum(shard["frames"] for shard in self.index["shards"])

    @property
    def dim(self) -> int:
        return int(self.index["dim"])

    @staticmethod
    def exists(path: str | Path) -> bool:
        return (Path(path) / "index.json").is_file()

    def batches(self, epoch: int = 0, seed: int = 0) -> Iterator[torch.Tensor]:
        """Shards as ``(N, D)`` float32 tensors, in an order shuffled from ``(seed, epoch)``."""
        shards = self.index["shards"]
        for i in np.random.default_rng([seed, epoch]).permutation(len(shards)).tolist():
            array = load_npy(self.path / shards[i]["file"], what="a feature shard", mmap_mode="r")
            yield torch.from_numpy(np.array(array, dtype=np.float32))  # (N_i, D), a writable copy


def dump_features(
    batches: Iterable[FeatureBatch], path: str | Path, *, info: Mapping[str, Any] | None = None
) -> FeatureDump:
    """Write each batch's frames as one ``.npy`` shard under ``path`` (atomically), then ``index.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    shards, dim, utterances = [], None, 0
    for number, (ids, features) in enumerate(batches):
        if not features:
            continue
        points = torch.cat(features).float().cpu().numpy()  # (N, D)
        dim = points.shape[1]
        name = f"shard-{number:05d}.npy"
        with atomic_path(path / name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, points)
        shards.append({"file": name, "frames": int(points.shape[0])})
        utterances += len(ids)
    if dim is None:
        raise DataError("no features to dump", path)
    with atomic_write(path / "index.json") as handle:
        json.dump({"dim": dim, "utterances": utterances, "shards": shards, **(info or {})}, handle, indent=1)
    return FeatureDump(path)
