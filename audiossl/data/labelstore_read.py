"""Reading label stores (the format: :mod:`audiossl.data.labelstore`): constants, the dtype rule, LabelStore.

:class:`LabelStore` opens a store dir lazily; :func:`label_dtype` picks the label dtype from k;
:func:`is_label_store` tells a store dir from an older label dir.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.errors import ConfigError, DataError

FORMAT = "labelstore"
VERSION = 1
LABELS_NPY = "labels.npy"
OFFSETS_NPY = "offsets.npy"
IDS = "ids"
ID_OFFSETS_NPY = "id_offsets.npy"
INFO = "info.json"
FRAME_RATE = "frame_rate"
STORE_FILES = (LABELS_NPY, OFFSETS_NPY, IDS, ID_OFFSETS_NPY)

#: The most clusters a frame label store holds (uint16).
MAX_CLUSTERS = 65536
#: Fields of info.json the store computes itself (not carried over by a merge).
COMPUTED = (
    "format",
    "version",
    "dtype",
    "n_clusters",
    "per_utterance",
    "frame_rate",
    "utterances",
    "frames",
    "max_label",
)

#: Every this many ids, one is kept in memory when a store is opened (a lookup then reads one block).
FENCE_EVERY = 256


def label_dtype(n_clusters: int, *, per_utterance: bool = False) -> np.dtype:
    """The smallest unsigned dtype for labels ``0..n_clusters - 1``: uint8 up to 256, uint16 up to 65,536.

    Per-utterance stores (pseudo-speakers) may also use uint32; frame labels beyond 65,536
    clusters raise :class:`ConfigError`.
    """
    n_clusters = int(n_clusters)
    if n_clusters < 1:
        raise ConfigError(f"a label store needs at least 1 cluster, got {n_clusters}")
    if n_clusters <= 256:
        return np.dtype(np.uint8)
    if n_clusters <= MAX_CLUSTERS:
        return np.dtype(np.uint16)
    if per_utterance and n_clusters <= 2**32:
        return np.dtype(np.uint32)
    raise ConfigError(
        f"{n_clusters} clusters do not fit a label store (uint16 labels: at most {MAX_CLUSTERS} clusters); "
        "HuBERT uses 100-2000, use fewer clusters"
    )


def is_label_store(path: str | Path) -> bool:
    """Whether ``path`` is a complete label store dir (its info.json names the format)."""
    info = Path(path) / INFO
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def _encode_id(utt: str) -> bytes:
    """An utterance id as the UTF-8 bytes the store sorts by; empty or whitespace ids are refused."""
    if not isinstance(utt, str):
        utt = utt.decode("utf-8") if isinstance(utt, bytes) else str(utt)
    if not utt or any(ch.isspace() for ch in utt) or "\0" in utt:
        raise DataError(f"utterance id {utt!r} is empty or contains whitespace: label stores keep Kaldi ids")
    return utt.encode("utf-8")


# ----------------------------------------------------------------------------- reading


class _NpyFile:
    """A 1-d ``.npy`` file opened for positional reads: its dtype, length and where its data starts.

    The header is checked against the file's size, so a truncated file is caught on opening.
    """

    def __init__(self, path: Path, dtype: np.dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        try:
            self.handle = open(path, "rb")  # noqa: SIM115  (held for positional reads; closed with the store)
        except FileNotFoundError:
            raise DataError("missing file of the label store", path) from None
        try:
            version = np.lib.format.read_magic(self.handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unknown .npy version {version}")
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, found = read_header(self.handle)
        except (ValueError, OSError, SyntaxError) as error:
            self.handle.close()
            raise DataError(f"corrupted or truncated label store file ({error})", path) from None
        self.start = self.handle.tell()
        if len(shape) != 1 or fortran or found != self.dtype:
            self.handle.close()
            raise DataError(f"expected a 1-d {self.dtype} array, found {found} {shape}", path)
        self.length = int(shape[0])
        size = os.fstat(self.handle.fileno()).st_size
        if size != self.start + self.length * self.dtype.itemsize:
            self.handle.close()
            raise DataError(
                f"corrupted or truncated label store file ({size} bytes for {self.length} {self.dtype} values)", path
            )

    def read(self, first: int, count: int) -> np.ndarray:
        """Values ``first .. first + count - 1`` (a positional read: no file position, no mapped page)."""
        size = self.dtype.itemsize
        data = os.pread(self.handle.fileno(), count * size, self.start + first * size)
        if len(data) != count * size:
            raise DataError(f"file shrank while reading values {first}..{first + count}", self.path)
        return np.frombuffer(data, self.dtype)

    def map(self) -> np.ndarray:
        """The whole array, memory-mapped read-only (bulk work: verification, export)."""
        if self.length == 0:
            return np.zeros(0, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.start, shape=(self.length,))


class LabelStore(Mapping[str, torch.Tensor]):
    """A label store dir opened for reading: ``store[utt]`` is (F,) int64 (a 0-d one per utterance), read lazily.

    Opening reads info.json, the ``.npy`` headers (checked against the file sizes: a truncated
    file is a :class:`DataError` naming it) and every ``FENCE_EVERY``-th id; nothing else stays
    in memory. A lookup bisects those ids, then reads one block of ids; an utterance's labels are
    one positional read (``os.pread``) of its slice. The reads go through the page cache, shared
    by every process of a node like a memory map, but map nothing into the process, so its
    resident memory stays flat however many utterances a run reads (slices of a map would each
    keep their file pages, whole large folios on recent kernels, in the process's RSS).
    :attr:`labels` maps the whole array for bulk work. Pickles by path (the DataLoader's
    worker processes reopen it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        info_path = self.path / INFO
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("not a label store (no info.json)", self.path) from None
        except ValueError as error:
            raise DataError(f"unreadable info.json ({error})", info_path) from None
        if not isinstance(self.info, dict) or self.info.get("format") != FORMAT:
            raise DataError(f"info.json does not describe a {FORMAT}", info_path)
        if int(self.info.get("version", 0)) > VERSION:
            raise DataError(f"label store version {self.info['version']} is newer than this audiossl reads", info_path)
        try:
            self.dtype = np.dtype(self.info["dtype"])
            self.n_clusters = int(self.info["n_clusters"])
            self.per_utterance = bool(self.info["per_utterance"])
            count, frames = int(self.info["utterances"]), int(self.info["frames"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"info.json lacks a store field ({error})", info_path) from None
        rate = self.info.get("frame_rate")
        self.frame_rate = None if rate is None else float(rate)
        self._files: list[Any] = []
        self._labels = self._open(_NpyFile(self.path / LABELS_NPY, self.dtype))  # (T,)
        self._id_offsets = self._open(_NpyFile(self.path / ID_OFFSETS_NPY, np.dtype(np.int64)))  # (N + 1,)
        self._offsets = None
        if not self.per_utterance:
            self._offsets = self._open(_NpyFile(self.path / OFFSETS_NPY, np.dtype(np.int64)))  # (N + 1,)
        try:
            self._ids = self._open(open(self.path / IDS, "rb"))  # noqa: SIM115  (closed with the store)
        except FileNotFoundError:
            raise DataError("missing file of the label store", self.path / IDS) from None
        self._check_sizes(count, frames)
        self._fences = self._read_fences()

    def _open(self, file: Any) -> Any:
        self._files.append(file.handle if isinstance(file, _NpyFile) else file)
        return file

    def _check_sizes(self, count: int, frames: int) -> None:
        if self._id_offsets.length != count + 1 or (count >= 0 and int(self._id_offsets.read(0, 1)[0]) != 0):
            found = self._id_offsets.length - 1
            raise DataError(f"holds {found} id offsets for {count} utterances", self._id_offsets.path)
        expected = count if self.per_utterance else frames
        if self._labels.length != expected:
            raise DataError(f"holds {self._labels.length} labels, info.json says {expected}", self._labels.path)
        if self._offsets is not None:
            ends = self._offsets.read(0, 1).tolist() + self._offsets.read(count, 1).tolist()
            if self._offsets.length != count + 1 or ends != [0, frames]:
                raise DataError(f"offsets do not cover {count} utterances and {frames} frames", self._offsets.path)
        size = os.fstat(self._ids.fileno()).st_size
        last = int(self._id_offsets.read(count, 1)[0])
        if size != last:
            raise DataError(f"ids file has {size} bytes, id_offsets.npy says {last}", self.path / IDS)

    def _read_fences(self) -> list[bytes]:
        """Every ``FENCE_EVERY``-th id (N / FENCE_EVERY of them: 4,000 for a million utterances)."""
        return [self.key_at(row) for row in range(0, len(self), FENCE_EVERY)]

    # ------------------------------------------------------------------ pickling: by path

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def close(self) -> None:
        """Close the files (the store is unusable afterwards)."""
        for handle in self._files:
            handle.close()

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return self._id_offsets.length - 1

    def _id_bytes(self, start: int, stop: int) -> bytes:
        return os.pread(self._ids.fileno(), stop - start, start)

    def key_at(self, row: int) -> bytes:
        """The UTF-8 id of row ``row`` (rows are in id order)."""
        start, stop = self._id_offsets.read(row, 2).tolist()
        line = self._id_bytes(start, stop) if 0 <= start < stop else b""
        if len(line) != stop - start or not line.endswith(b"\n") or len(line) < 2:
            raise DataError(f"id offsets of row {row} are corrupted ({start}..{stop})", self._id_offsets.path)
        return line[:-1]

    def id_at(self, row: int) -> str:
        """The utterance id of row ``row``."""
        return self.key_at(row).decode("utf-8")

    def row(self, utt: str) -> int | None:
        """The row of ``utt``, or None when it is not in the store: bisect the fences, then one block of ids."""
        try:
            key = _encode_id(utt)
        except DataError:
            return None
        block = bisect.bisect_right(self._fences, key) - 1
        if block < 0:
            return None
        first = block * FENCE_EVERY
        count = min(FENCE_EVERY, len(self) - first)
        bounds = self._id_offsets.read(first, count + 1)  # (count + 1,)
        start = int(bounds[0])
        text = self._id_bytes(start, int(bounds[-1]))
        keys = text.split(b"\n")[:-1]
        if len(keys) != count or len(text) != int(bounds[-1]) - start:
            raise DataError(f"ids of rows {first}..{first + count - 1} do not match their offsets", self.path / IDS)
        index = bisect.bisect_left(keys, key)
        return first + index if index < count and keys[index] == key else None

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Rows (B,) int64 of ``ids``, -1 for ids not in the store."""
        return np.asarray([-1 if (r := self.row(u)) is None else r for u in ids], dtype=np.int64)

    def __contains__(self, utt: object) -> bool:
        return isinstance(utt, str) and self.row(utt) is not None

    def iter_keys(self) -> Iterator[bytes]:
        """The UTF-8 ids in order, read sequentially."""
        with open(self.path / IDS, "rb") as handle:
            for count, line in enumerate(handle):
                if count >= len(self) or not line.endswith(b"\n"):
                    raise DataError(f"line {count + 1} does not end or is one too many", self.path / IDS)
                yield line[:-1]

    def __iter__(self) -> Iterator[str]:
        return (key.decode("utf-8") for key in self.iter_keys())

    def array_at(self, row: int) -> np.ndarray:
        """The stored values of row ``row``: (F,) (0-d per utterance), uint8/16/32, read-only."""
        if not 0 <= row < len(self):
            raise IndexError(row)
        if self.per_utterance:
            return self._labels.read(row, 1)[0]
        start, stop = self._offsets.read(row, 2).tolist()
        if not 0 <= start <= stop <= self._labels.length:
            raise DataError(f"offsets of row {row} are corrupted ({start}..{stop})", self._offsets.path)
        return self._labels.read(start, stop - start)

    def array(self, utt: str) -> np.ndarray:
        """The stored values of ``utt``; KeyError when absent."""
        row = self.row(utt)
        if row is None:
            raise KeyError(utt)
        return self.array_at(row)

    def __getitem__(self, utt: str) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array(utt), dtype=np.int64))

    # ------------------------------------------------------------------ bulk access

    @property
    def labels(self) -> np.ndarray:
        """All labels (T,) (one per utterance in per-utterance stores), memory-mapped read-only."""
        return self._labels.map()

    @property
    def offsets(self) -> np.ndarray | None:
        """(N + 1,) int64 start of each utterance's labels (None per utterance), memory-mapped."""
        return None if self._offsets is None else self._offsets.map()

    def verify(self) -> None:
        """Scan every file: ids sorted and unique, offsets rising, labels below ``n_clusters`` (else DataError)."""
        id_offsets = self._id_offsets.map()
        position, previous = 0, None
        for row, key in enumerate(self.iter_keys()):
            position += len(key) + 1
            if int(id_offsets[row + 1]) != position:
                raise DataError(f"id offset of row {row + 1} is not where line {row + 1} ends", self._id_offsets.path)
            if previous is not None and key <= previous:
                raise DataError(f"ids are not sorted and unique at row {row} ({key!r})", self.path / IDS)
            previous = key
        step = 1 << 22
        offsets = self.offsets
        if offsets is not None:
            for start in range(0, len(offsets), step):
                if (np.diff(np.asarray(offsets[start : start + step + 1])) < 0).any():
                    raise DataError("offsets decrease", self._offsets.path)
        labels = self.labels
        for start in range(0, len(labels), step):
            largest = int(labels[start : start + step].max())
            if largest >= self.n_clusters:
                raise DataError(f"a label reaches {largest}, not below {self.n_clusters}", self._labels.path)


def open_labels(path: str | Path) -> LabelStore:
    """Open the label store dir ``path`` (or the dir of a file inside it)."""
    path = Path(path)
    return LabelStore(path if path.is_dir() else path.parent)
