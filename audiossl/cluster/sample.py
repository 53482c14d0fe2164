"""The k-means feature sample, drawn the same way sharded or not, in bounded memory.

The sample contract:

* **Which utterances.** Every utterance of the data dirs gets a key from a hash of
  ``(seed, dir number, utterance id)`` (:func:`utterance_key`, uniform in [0, 1)). The sample
  keeps the utterances whose key is below ``sample_fraction``, in key order (a random order
  that does not depend on how the work is split), cut at the first one that would take the
  total past ``max_hours`` of audio (durations from the data dir: utt2dur, segments or
  headers). Every shard computes this selection itself from the durations alone, so the
  union of the shards' samples is exactly the unsharded sample, and memory is bounded by
  ``max_hours`` whatever the corpus size: only the durations of every utterance are held.
* **Which features.** The selection, in key order, is cut into chunks of ``chunk_size``
  utterances; a chunk's features (length-bucketed batches formed within the chunk) are one
  ``chunk-NNNNN.npy`` file of the dump, named by its global chunk number. Shard ``I/N`` and
  each of ``num_jobs`` processes write a contiguous block of chunks, so the files are the same
  files whoever writes them; shard ``I`` records ``shard-I-of-N.json`` (its files and frames).
* **The dump.** ``index.json`` (written last, by the unsharded run or by :func:`merge_sample`
  once every shard is there) lists the chunk files in order and the sampling settings; a
  :class:`~audiossl.cluster.features.FeatureDump` reads it, and ``kmeans fit --dump-dir``
  fits from it, so a fit on a sharded sample equals the fit on the unsharded one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.cluster.features import FeatureDump, chunk_features
from audiossl.cluster.source import feature_source
from audiossl.data.dataset import AudioDataset
from audiossl.data.shards import Shard, advance, check_parts, fingerprint, part_meta, run_jobs, split_range
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.progress import progress as progress_bar

#: Sampled utterances per dump file (one chunk of features).
SAMPLE_CHUNK = 64

INDEX = "index.json"


def utterance_key(seed: int, dir_number: int, utt: str) -> float:
    """A deterministic uniform key in [0, 1) of one utterance (SHA-256 of seed, dir number and id)."""
    digest = hashlib.sha256(f"{seed}\0{dir_number}\0{utt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class SampleSettings:
    """How the sample is drawn and featurised; every shard of one sample must agree on all of it."""

    data_dirs: tuple[str, ...]
    features: str
    feature_options: str
    sample_rate: int
    sample_fraction: float
    max_hours: float | None
    seed: int
    batch_seconds: float
    chunk_size: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "data_dirs": list(self.data_dirs)}


def select_sample(
    ids: Sequence[Sequence[str]], durations: Sequence[Sequence[float]], settings: SampleSettings
) -> list[tuple[int, int]]:
    """The sample as ``(dir number, utterance index)`` in key order (see the module doc)."""
    if not 0.0 < settings.sample_fraction <= 1.0:
        raise ConfigError(f"sample_fraction must be in (0, 1], got {settings.sample_fraction}")
    if settings.chunk_size < 1:
        raise ConfigError(f"sample_chunk must be >= 1, got {settings.chunk_size}")
    if settings.max_hours is not None and settings.max_hours <= 0:
        raise ConfigError(f"max_hours must be positive, got {settings.max_hours}")
    keyed = []
    for number, names in enumerate(ids):
        for index, utt in enumerate(names):
            key = utterance_key(settings.seed, number, utt)
            if key < settings.sample_fraction:
                keyed.append((key, number, index))
    keyed.sort()
    budget = None if settings.max_hours is None else settings.max_hours * 3600.0
    chosen, seconds = [], 0.0
    for _, number, index in keyed:
        seconds += durations[number][index]
        if budget is not None and seconds > budget:
            break
        chosen.append((number, index))
    return chosen


@dataclass
class _SampleJob:
    """Features of a block of sample chunks, one ``.npy`` per chunk (picklable: runs in a job process)."""

    settings: SampleSettings
    config: Any  # the FitConfig (its features are built in the job: a model is not shipped between processes)
    out: str
    _module: Any = None

    def points(self, chunk: int, members: list[tuple[int, int]], datasets: list[AudioDataset]) -> np.ndarray:
        """Frames of one chunk's utterances, concatenated in key order: (N, D) float32."""
        if self._module is None:
            self._module = feature_source(self.config)[0].to(self.config.kmeans.device).eval()
        device = self.config.kmeans.device
        points_of: dict[tuple[int, str], torch.Tensor] = {}
        for number in sorted({number for number, _ in members}):
            indices = [index for n, index in members if n == number]
            batches = chunk_features(datasets[number], self._module, indices, self.settings.batch_seconds, device)
            for ids, features in batches:
                for utt, frames in zip(ids, features, strict=True):
                    points_of[(number, utt)] = frames.float().cpu()
                advance(len(ids))
        order = [(number, datasets[number].ids[index]) for number, index in members]
        return torch.cat([points_of[member] for member in order]).numpy()  # (N, D), in key order

    def __call__(self, task: tuple[range, list[tuple[int, int]]]) -> list[dict[str, Any]]:
        chunks, items = task
        settings = self.settings
        datasets = [AudioDataset(path, sample_rate=settings.sample_rate) for path in settings.data_dirs]
        files = []
        for chunk in chunks:
            members = items[(chunk - chunks.start) * settings.chunk_size :][: settings.chunk_size]
            points = self.points(chunk, members, datasets)
            name = f"chunk-{chunk:05d}.npy"
            with atomic_path(Path(self.out) / name) as tmp, open(tmp, "wb") as handle:
                np.save(handle, points)
            files.append({"file": name, "frames": int(points.shape[0]), "utterances": len(members)})
        return files


def sample_settings(data_dirs: Sequence[str | Path], config: Any) -> SampleSettings:
    """The sample settings of a (resolved) FitConfig over ``data_dirs``."""
    return SampleSettings(
        data_dirs=tuple(str(Path(path).resolve()) for path in data_dirs),
        features=config.features,
        feature_options=json.dumps(config.feature_options, sort_keys=True),
        sample_rate=config.sample_rate,
        sample_fraction=config.sample_fraction,
        max_hours=config.max_hours,
        seed=config.kmeans.seed,
        batch_seconds=config.batch_seconds,
        chunk_size=config.sample_chunk,
    )


def sample_features(
    data_dirs: Sequence[str | Path],
    config: Any,
    dump_dir: str | Path,
    *,
    shard: Shard | str | None = None,
    num_jobs: int = 1,
    progress: bool = True,
) -> FeatureDump | None:
    """Write shard ``shard`` of the feature sample of a FitConfig ``config`` into ``dump_dir`` (module doc).

    Unsharded, writes the complete dump and returns it; a shard writes its chunk files and
    ``shard-I-of-N.json`` and returns None (:func:`merge_sample` completes the dump).
    ``num_jobs`` processes share the chunks; the files are the same either way.
    """
    _, config = feature_source(config)  # the recorded config: a checkpoint resolved to its file
    settings = sample_settings(data_dirs, config)
    data_dirs = list(settings.data_dirs)
    shard = Shard.parse(shard)
    dump_dir = Path(dump_dir)
    dump_dir.mkdir(parents=True, exist_ok=True)
    datasets = [AudioDataset(path, sample_rate=settings.sample_rate) for path in data_dirs]
    for path, dataset in zip(data_dirs, datasets, strict=True):
        if len(dataset) == 0:
            raise DataError("data dir has no utterances", path)
    ids = [dataset.ids for dataset in datasets]
    chosen = select_sample(ids, [dataset.durations for dataset in datasets], settings)
    num_chunks = -(-len(chosen) // settings.chunk_size)
    block = shard.range(num_chunks)
    ranges = [r for r in split_range(block, max(1, num_jobs)) if len(r)] or [block]
    size = settings.chunk_size
    tasks = [(r, chosen[r.start * size : r.stop * size]) for r in ranges]
    job = _SampleJob(settings, config, str(dump_dir))
    results = run_jobs(
        job,
        tasks,
        num_jobs=num_jobs,
        desc="k-means sample" + ("" if shard.whole else f" (shard {shard})"),
        total=sum(len(items) for _, items in tasks),
        unit="utt",
        describe=lambda task: f"sample chunks {task[0].start}..{task[0].stop - 1}",
        show_progress=progress,
    )
    files = [entry for result in results for entry in result]
    whole_fingerprint = fingerprint(f"{n}/{ids[n][i]}" for n, i in chosen)
    if not shard.whole:
        meta = part_meta(shard, block, whole_fingerprint, _files=files, **settings.to_dict())
        with atomic_write(dump_dir / f"{shard.name}.json") as handle:
            json.dump(meta, handle, indent=1)
        return None
    _write_index(dump_dir, files, settings, whole_fingerprint)
    return FeatureDump(dump_dir)


def stream_sample(
    data_dirs: Sequence[str | Path], config: Any, epoch: int, *, progress: bool = True
) -> Iterator[torch.Tensor]:
    """The sample's chunks as ``(N, D)`` tensors, computed from the audio, in the order a dump of it is read.

    That is :meth:`FeatureDump.batches` of the dump :func:`sample_features` would write:
    chunks permuted from ``(seed, epoch)``. So a fit streamed from the audio equals a fit
    from the dump, without writing it.
    """
    _, config = feature_source(config)
    settings = sample_settings(data_dirs, config)
    datasets = [AudioDataset(path, sample_rate=settings.sample_rate) for path in settings.data_dirs]
    for path, dataset in zip(data_dirs, datasets, strict=True):
        if len(dataset) == 0:
            raise DataError("data dir has no utterances", path)
    chosen = select_sample([d.ids for d in datasets], [d.durations for d in datasets], settings)
    size = settings.chunk_size
    num_chunks = -(-len(chosen) // size)
    job = _SampleJob(settings, config, "")
    order = np.random.default_rng([settings.seed, epoch]).permutation(num_chunks).tolist()
    chunks = (
        progress_bar(order, desc=f"features (epoch {epoch})", total=num_chunks, unit="chunk") if progress else order
    )
    for chunk in chunks if progress else order:
        yield torch.from_numpy(job.points(chunk, chosen[chunk * size : (chunk + 1) * size], datasets))


def _write_index(dump_dir: Path, files: list[dict[str, Any]], settings: SampleSettings, sample_id: str) -> None:
    if not files or not sum(entry["frames"] for entry in files):
        raise DataError("the k-means sample is empty (raise sample_fraction or max_hours)", dump_dir)
    dim = int(np.load(dump_dir / files[0]["file"], mmap_mode="r").shape[1])
    index = {
        "dim": dim,
        "utterances": sum(entry["utterances"] for entry in files),
        "shards": files,
        "sample": sample_id,
        "settings": settings.to_dict(),
    }
    with atomic_write(dump_dir / INDEX) as handle:
        json.dump(index, handle, indent=1)


def merge_sample(dump_dir: str | Path, *, keep_parts: bool = False) -> FeatureDump:
    """Complete a sample written by shards: check every ``shard-I-of-N.json``, write ``index.json``."""
    dump_dir = Path(dump_dir)
    parts = sorted(dump_dir.glob("shard-*-of-*.json"))
    metas = []
    for path in parts:
        try:
            metas.append((str(path), json.loads(path.read_text(encoding="utf-8"))))
        except ValueError as error:
            raise DataError(f"unreadable shard record ({error})", path) from None
    ordered = check_parts(metas, f"the k-means sample in {dump_dir}")
    first = ordered[0][1]
    names = set(SampleSettings.__dataclass_fields__)
    settings = SampleSettings(**{key: first[key] for key in names})
    settings = SampleSettings(**{**settings.__dict__, "data_dirs": tuple(first["data_dirs"])})
    files = [entry for _, meta in ordered for entry in meta["_files"]]
    _write_index(dump_dir, files, settings, first["fingerprint"])
    if not keep_parts:
        for path in parts:
            path.unlink()
    return FeatureDump(dump_dir)


def check_dump_settings(dump: FeatureDump, settings: SampleSettings) -> None:
    """Refuse a dump drawn with other settings than the fit's (a stale or foreign sample)."""
    recorded = dump.index.get("settings")
    if recorded is None:
        return  # a dump written before sample settings were recorded
    expected = settings.to_dict()
    changed = sorted(key for key in expected if recorded.get(key) != expected[key])
    if changed:
        raise ConfigError(
            f"the feature dump {dump.path} was drawn with other settings ({', '.join(changed)}); "
            "remove it or point the dump dir elsewhere"
        )
