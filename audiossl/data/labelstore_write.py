"""Writing label stores (:mod:`audiossl.data.labelstore`): an incremental writer and a merge of shards.

:class:`LabelStoreWriter` takes utterances in any order (one at a time or vectorised), spills
their labels to a temporary file inside the out dir and sorts them by id when it closes, in
memory bounded by the ids. :func:`merge_label_stores` merges stores written per shard (``kmeans
label --shard I/N``) in one streaming pass; its files are byte-identical to those of one writer
fed every utterance with the same info, because both write the same canonical layout (ids in
UTF-8 byte order, the header NumPy writes, info.json with sorted computed fields first).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.data.labelstore_read import (
    COMPUTED,
    FORMAT,
    FRAME_RATE,
    ID_OFFSETS_NPY,
    IDS,
    INFO,
    LABELS_NPY,
    OFFSETS_NPY,
    STORE_FILES,
    VERSION,
    LabelStore,
    _encode_id,
    label_dtype,
)
from audiossl.errors import DataError
from audiossl.fileio import atomic_write

_CHUNK_FRAMES = 1 << 23  # frames gathered at once when sorting (64 MB of int64 indices)
_ID_CHUNK = 1 << 16  # ids converted to a NumPy byte-string array at once while writing


# ----------------------------------------------------------------------------- .npy written in pieces


class _NpyStream:
    """A 1-d ``.npy`` file of known dtype and length written in pieces (the header NumPy itself writes)."""

    def __init__(self, path: Path, dtype: np.dtype, length: int):
        self.path, self.dtype, self.length, self.written = path, np.dtype(dtype), int(length), 0
        self.handle = open(path, "wb")  # noqa: SIM115  (closed in close())
        header = np.lib.format.header_data_from_array_1_0(np.empty(0, self.dtype))
        header["shape"] = (self.length,)
        np.lib.format.write_array_header_1_0(self.handle, header)
        self.buffer = io.BytesIO()

    def write(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.written += len(values)
        self.buffer.write(values.tobytes())
        if self.buffer.tell() >= 1 << 22:
            self.handle.write(self.buffer.getvalue())
            self.buffer = io.BytesIO()

    def close(self) -> None:
        self.handle.write(self.buffer.getvalue())
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if self.written != self.length:
            raise RuntimeError(f"{self.path}: wrote {self.written} values of {self.length}")


class _IdStream:
    """The ``ids`` file and its ``id_offsets.npy``, written in sorted order."""

    def __init__(self, tmp: Path, count: int):
        self.ids = open(tmp / IDS, "wb")  # noqa: SIM115  (closed in close())
        self.offsets = _NpyStream(tmp / ID_OFFSETS_NPY, np.int64, count + 1)
        self.offsets.write(np.zeros(1, np.int64))
        self.position = 0

    def write(self, keys: Sequence[bytes]) -> None:
        if not len(keys):
            return
        lengths = np.fromiter((len(k) + 1 for k in keys), np.int64, len(keys))
        self.offsets.write(self.position + np.cumsum(lengths))
        self.position += int(lengths.sum())
        self.ids.write(b"".join(k + b"\n" for k in keys))

    def close(self) -> None:
        self.ids.flush()
        os.fsync(self.ids.fileno())
        self.ids.close()
        self.offsets.close()


def _publish(tmp: Path, out_dir: Path, names: Sequence[str], info: dict[str, Any], frame_rate: float | None) -> Path:
    """Move the finished files of ``tmp`` into ``out_dir``; ``frame_rate`` and ``info.json`` come last."""
    with contextlib.suppress(FileNotFoundError):
        (out_dir / INFO).unlink()  # a half-replaced dir must not pass for a store
    for name in STORE_FILES:
        if name not in names:
            with contextlib.suppress(FileNotFoundError):
                (out_dir / name).unlink()
    for name in names:
        os.chmod(tmp / name, 0o666 & ~_umask())
        os.replace(tmp / name, out_dir / name)
    if frame_rate is not None:
        with atomic_write(out_dir / FRAME_RATE) as handle:
            handle.write(f"{float(frame_rate)!r}\n")
    with atomic_write(out_dir / INFO) as handle:
        json.dump(info, handle, indent=1)
        handle.write("\n")
    return out_dir


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _store_info(
    n_clusters: int,
    dtype: np.dtype,
    per_utterance: bool,
    frame_rate: float | None,
    utterances: int,
    frames: int,
    max_label: int,
    info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    extra = {key: value for key, value in (info or {}).items() if key not in COMPUTED}
    return {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype.name,
        "n_clusters": int(n_clusters),
        "per_utterance": bool(per_utterance),
        "frame_rate": None if frame_rate is None else float(frame_rate),
        "utterances": int(utterances),
        "frames": int(frames),
        "max_label": int(max_label),
        **extra,
    }


# ----------------------------------------------------------------------------- writing


class LabelStoreWriter:
    """Append utterances' labels in any order; :meth:`close` sorts them by id and writes the store.

    Memory stays bounded by the ids (kept as a NumPy byte-string array, about their length in
    bytes each): the labels spill to a temporary file inside ``out_dir`` as they come. Used as a
    context manager, an exception inside the ``with`` removes the temporary files and leaves
    ``out_dir`` as it was.

    ``n_clusters``: labels lie in ``0..n_clusters - 1`` (checked on :meth:`add`) and pick the
    dtype (:func:`label_dtype`). ``frame_rate``: the label rate in Hz (None for per-utterance
    labels). ``per_utterance``: one value per utterance instead of a sequence. ``info``: extra
    fields for info.json.
    """

    def __init__(
        self,
        out_dir: str | Path,
        n_clusters: int,
        frame_rate: float | None,
        *,
        info: Mapping[str, Any] | None = None,
        per_utterance: bool = False,
    ):
        self.dtype = label_dtype(n_clusters, per_utterance=per_utterance)
        self.n_clusters = int(n_clusters)
        self.frame_rate = frame_rate
        self.per_utterance = per_utterance
        self.info = dict(info or {})
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=".labelstore.", dir=self.out_dir))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)  # a writer dropped unclosed
        self._data = open(self._tmp / "arrival", "wb")  # noqa: SIM115  (closed in close()/abort())
        self._id_chunks: list[np.ndarray] = []
        self._pending: list[bytes] = []
        self._lengths: list[np.ndarray] = []
        self._pending_lengths: list[int] = []
        self.utterances = 0
        self.frames = 0
        self.max_label = -1
        self._closed = False

    def __enter__(self) -> LabelStoreWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _check(self, values: np.ndarray, what: str) -> np.ndarray:
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise DataError(f"labels of {what} must be integers, got {values.dtype}")
        if values.size:
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= self.n_clusters:
                raise DataError(f"labels of {what} fall outside 0..{self.n_clusters - 1}: {low}..{high}")
            self.max_label = max(self.max_label, high)
        return values.astype(self.dtype, copy=False)

    def add(self, utt: str, labels: Any) -> None:
        """Append one utterance: labels (F,) (or one value with ``per_utterance``), any integer array or tensor."""
        key = _encode_id(utt)
        values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        expected = 0 if self.per_utterance else 1
        if values.ndim != expected:
            raise DataError(f"labels of utterance {utt!r} must have {expected} dimension(s), got shape {values.shape}")
        values = self._check(values.reshape(-1), f"utterance {utt!r}")
        self._data.write(values.tobytes())
        self._pending.append(key)
        self._pending_lengths.append(len(values))
        self.utterances += 1
        self.frames += len(values)
        if len(self._pending) >= _ID_CHUNK:
            self._flush_ids()

    def add_many(self, ids: Sequence[str] | np.ndarray, labels: Any, lengths: Any | None = None) -> None:
        """Append many utterances: ``labels`` (sum(lengths),) flat, ``lengths`` (N,) (None per utterance)."""
        keys = np.asarray([_encode_id(u) for u in ids], dtype=np.bytes_)  # (N,)
        values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        values = values.reshape(-1)
        if self.per_utterance:
            counts = np.ones(len(keys), np.int64)
        else:
            counts = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if len(counts) != len(keys) or int(counts.sum()) != len(values) or (counts < 0).any():
            raise DataError(
                f"{len(keys)} ids, {len(counts)} lengths summing to {int(counts.sum())}, {len(values)} labels"
            )
        values = self._check(values, f"{len(keys)} utterances")
        self._flush_ids()
        self._data.write(values.tobytes())
        self._id_chunks.append(keys)
        self._lengths.append(counts)
        self.utterances += len(keys)
        self.frames += len(values)

    def _flush_ids(self) -> None:
        if self._pending:
            self._id_chunks.append(np.asarray(self._pending, dtype=np.bytes_))
            self._lengths.append(np.asarray(self._pending_lengths, dtype=np.int64))
            self._pending, self._pending_lengths = [], []

    def abort(self) -> None:
        """Drop everything written so far (the out dir is left as it was)."""
        if not self._closed:
            self._closed = True
            self._data.close()
            shutil.rmtree(self._tmp, ignore_errors=True)

    def close(self) -> Path:
        """Sort the utterances by id, write the store into ``out_dir`` (files atomically, info.json last)."""
        if self._closed:
            raise RuntimeError("this label store writer is closed")
        try:
            self._flush_ids()
            self._data.close()
            self._write_sorted()
            info = _store_info(
                self.n_clusters,
                self.dtype,
                self.per_utterance,
                self.frame_rate,
                self.utterances,
                self.frames,
                self.max_label,
                self.info,
            )
            names = [LABELS_NPY, IDS, ID_OFFSETS_NPY] + ([] if self.per_utterance else [OFFSETS_NPY])
            _publish(self._tmp, self.out_dir, names, info, self.frame_rate)
        finally:
            self._closed = True
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.out_dir

    def _write_sorted(self) -> None:
        ids = np.concatenate(self._id_chunks) if self._id_chunks else np.zeros(0, dtype="S1")  # (N,)
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)  # (N,)
        self._id_chunks, self._lengths = [], []
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        same = np.flatnonzero(ids[1:] == ids[:-1])
        if len(same):
            raise DataError(f"utterance {ids[same[0]].decode('utf-8')!r} was given labels twice", self.out_dir)
        arrival_starts = np.cumsum(lengths) - lengths  # (N,) where each utterance sits in the arrival file
        lengths, arrival_starts = lengths[order], arrival_starts[order]
        out = _NpyStream(self._tmp / LABELS_NPY, self.dtype, self.frames)
        ends = np.cumsum(lengths)  # (N,) where each utterance ends in the sorted order
        first, written = 0, 0
        while first < len(ids):  # gather the sorted order a chunk of utterances at a time
            last = max(int(np.searchsorted(ends, written + _CHUNK_FRAMES, side="right")), first + 1)
            counts = lengths[first:last]
            total = int(counts.sum())
            index = np.repeat(arrival_starts[first:last] - (written + np.cumsum(counts) - counts), counts)
            source = _map(self._tmp / "arrival", self.dtype, self.frames)  # mapped per chunk: the pages it
            out.write(source[index + np.arange(written, written + total)])  # touched leave the RSS with it
            del source
            written += total
            first = last
        out.close()
        (self._tmp / "arrival").unlink()
        if not self.per_utterance:
            offsets = _NpyStream(self._tmp / OFFSETS_NPY, np.int64, len(ids) + 1)
            offsets.write(np.concatenate([[0], np.cumsum(lengths)]))
            offsets.close()
        stream = _IdStream(self._tmp, len(ids))
        for start in range(0, len(ids), _ID_CHUNK):
            stream.write(ids[start : start + _ID_CHUNK].tolist())
        stream.close()


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    """A read-only map of ``count`` values of a raw file (an empty array for none: mmap refuses 0 bytes)."""
    if count == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


def write_label_store(
    out_dir: str | Path,
    labels: Mapping[str, Any],
    n_clusters: int,
    frame_rate: float | None,
    *,
    info: Mapping[str, Any] | None = None,
    per_utterance: bool = False,
) -> Path:
    """Write ``{utt: labels}`` as a store (a :class:`LabelStoreWriter` fed every item)."""
    with LabelStoreWriter(out_dir, n_clusters, frame_rate, info=info, per_utterance=per_utterance) as writer:
        for utt, values in labels.items():
            writer.add(utt, values)
    return Path(out_dir)


def merge_label_stores(
    shard_dirs: Sequence[str | Path], out_dir: str | Path, *, info: Mapping[str, Any] | None = None
) -> Path:
    """Merge stores written per shard into one, byte-identical to a single writer fed every utterance.

    The shards must agree on ``n_clusters``, ``frame_rate`` and ``per_utterance``, and hold
    disjoint ids (a :class:`DataError` names the shard otherwise). ``info``: the extra info.json
    fields of the result (default: the first shard's). The merge streams through the shards
    in id order (a k-way merge), in bounded memory.
    """
    if not shard_dirs:
        raise DataError("no label store shards to merge")
    stores = [LabelStore(path) for path in shard_dirs]
    first = stores[0]
    for store in stores[1:]:
        for field in ("n_clusters", "frame_rate", "per_utterance"):
            if store.info.get(field) != first.info.get(field):
                raise DataError(
                    f"shard {field} {store.info.get(field)!r} differs from {first.info.get(field)!r} of {first.path}",
                    store.path / INFO,
                )
    per_utterance = first.per_utterance
    dtype = label_dtype(first.n_clusters, per_utterance=per_utterance)
    count = sum(len(s) for s in stores)
    frames = sum(int(s.info["frames"]) for s in stores)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".labelstore.", dir=out_dir))
    try:
        labels = _NpyStream(tmp / LABELS_NPY, dtype, frames)
        offsets = None if per_utterance else _NpyStream(tmp / OFFSETS_NPY, np.int64, count + 1)
        if offsets is not None:
            offsets.write(np.zeros(1, np.int64))
        ids = _IdStream(tmp, count)
        position, previous = 0, None
        keys: list[bytes] = []
        ends: list[int] = []
        for key, shard, row in heapq.merge(*(_keys(store, i) for i, store in enumerate(stores))):
            if key == previous:
                raise DataError(f"utterance {key.decode('utf-8')!r} is in two shards", stores[shard].path)
            previous = key
            values = stores[shard].array_at(row)
            labels.write(values)
            position += len(values)
            keys.append(key)
            ends.append(position)
            if len(keys) >= _ID_CHUNK:
                ids.write(keys)
                if offsets is not None:
                    offsets.write(np.asarray(ends, np.int64))
                keys, ends = [], []
        ids.write(keys)
        if offsets is not None:
            offsets.write(np.asarray(ends, np.int64))
            offsets.close()
        labels.close()
        ids.close()
        extra = info if info is not None else first.info
        max_label = max(int(s.info.get("max_label", -1)) for s in stores)
        merged = _store_info(first.n_clusters, dtype, per_utterance, first.frame_rate, count, frames, max_label, extra)
        names = [LABELS_NPY, IDS, ID_OFFSETS_NPY] + ([] if per_utterance else [OFFSETS_NPY])
        _publish(tmp, out_dir, names, merged, first.frame_rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _keys(store: LabelStore, shard: int) -> Iterator[tuple[bytes, int, int]]:
    for row, key in enumerate(store.iter_keys()):
        yield key, shard, row
