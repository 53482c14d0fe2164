"""Targets that travel with the batch: frame labels and utterance labels, cropped and rate-converted here.

As lhotse attaches supervisions to its cuts, the data layer attaches what an objective
predicts to every :class:`~audiossl.data.dataset.Batch` (``batch.targets`` /
``batch.target_lengths``), so objectives receive tensors and never open label files. A
*target source* turns one utterance (its id, the offset and length of its crop, whether it
is whole) into a tensor:

* :class:`FrameTargets`: k-means frame labels of label dirs (``audiossl kmeans label``: a
  memory-mapped label store, :mod:`audiossl.data.labelstore`, or an older ``labels`` table,
  with its ``frame_rate``), read per utterance as batches ask, resampled to the encoder's token rate, cropped like
  the audio and checked against the utterance's token count: a difference of more than
  ``tolerance`` stops with the utterance named. The token count of a crop is read from a
  :class:`TokenClock`, data-side configuration measured once at build time from the input
  pipeline and the encoder.
* :class:`UtteranceTargets`: one value (or vector) per utterance from a table in memory
  (HuBERTopic topics, pseudo-speaker rows).

This module also reads label dirs (:func:`read_labels`, :func:`read_frame_rate`) and converts
and aligns label sequences (:func:`convert_label_rate`, :func:`check_label_alignment`);
:mod:`audiossl.cluster.labels` writes them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from audiossl.data.kaldi import read_entries
from audiossl.data.labelstore import LabelStore, is_label_store
from audiossl.errors import DataError

LABELS = "labels"
FRAME_RATE = "frame_rate"
ARK, SCP = "labels.ark", "labels.scp"
INFO = "info.json"

#: Target value of frames that take no part in a loss (padding, frames past an item's labels).
IGNORE = -100

S = TypeVar("S", torch.Tensor, list)


def read_frame_rate(label_dir: str | Path) -> float:
    """The label rate in Hz recorded in ``label_dir/frame_rate``."""
    path = Path(label_dir) / FRAME_RATE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DataError("no frame_rate file beside the labels: the label rate is unknown", path) from None
    try:
        rate = float(text)
    except ValueError:
        raise DataError(f"frame rate {text!r} is not a number", path, 1) from None
    if not rate > 0 or math.isinf(rate):
        raise DataError(f"frame rate must be positive, got {text}", path, 1)
    return rate


def read_labels(path: str | Path) -> tuple[Mapping[str, torch.Tensor], float]:
    """Read a label dir (or a file in it): ``({utt: labels (F,) int64}, frame_rate in Hz)``.

    A label store (:mod:`audiossl.data.labelstore`, what ``audiossl kmeans label`` writes) is
    opened lazily: the mapping is a :class:`~audiossl.data.labelstore.LabelStore` that reads an
    utterance's labels when asked. Older label dirs are read into a dict: the text table when
    present, else the Kaldi ark through ``labels.scp``.
    """
    path = Path(path)
    label_dir = path if path.is_dir() else path.parent
    if is_label_store(label_dir):
        return LabelStore(label_dir), read_frame_rate(label_dir)
    table = path if path.is_file() else label_dir / LABELS
    rate = read_frame_rate(label_dir)
    if not table.is_file() and (label_dir / SCP).is_file():
        import kaldiio

        with kaldiio.ReadHelper(f"scp:{label_dir / SCP}") as reader:
            return {utt: torch.from_numpy(array.astype("int64")) for utt, array in reader}, rate
    labels: dict[str, torch.Tensor] = {}
    for entry in read_entries(table, allow_empty_value=True):
        try:
            values = [int(token) for token in entry.value.split()]
        except ValueError:
            raise DataError(f"labels of {entry.key!r} must be integers", table, entry.line) from None
        if entry.key in labels:
            raise DataError(f"duplicate utterance {entry.key!r}", table, entry.line)
        labels[entry.key] = torch.tensor(values, dtype=torch.int64)  # (F,)
    return labels, rate


def convert_label_rate(labels: S, from_rate: float, to_rate: float, num_frames: int | None = None) -> S:
    """Resample a label sequence from ``from_rate`` to ``to_rate`` Hz.

    Target frame t (starting at t / to_rate seconds) takes the label of the source frame that
    starts at or just before it, ``floor(t * from_rate / to_rate)``: 100 Hz -> 50 Hz keeps
    frames 0, 2, 4, ... (with 25 ms / 10 ms MFCC frames and the wav2vec 2.0 CNN at 16 kHz,
    CNN frame t covers exactly the samples of MFCC frame 2t); 50 Hz -> 100 Hz repeats each
    label twice. ``num_frames`` (default ``round(len * to_rate / from_rate)``) sets the output
    length; positions past the source's end repeat its last label.
    """
    length = len(labels)
    if num_frames is None:
        num_frames = round(length * to_rate / from_rate)
    if length == 0 or num_frames <= 0:
        return labels[:0]
    ratio = from_rate / to_rate
    if isinstance(labels, torch.Tensor):  # the same float64 arithmetic as the loop below, vectorised
        steps = torch.arange(num_frames, dtype=torch.float64, device=labels.device)
        index = torch.floor(steps * ratio + 1e-9).long().clamp_(max=length - 1)
        return labels[index]
    index = [min(int(math.floor(t * ratio + 1e-9)), length - 1) for t in range(num_frames)]
    return [labels[i] for i in index]


def check_label_alignment(
    labels: Mapping[str, S],
    frame_lengths_by_utt: Mapping[str, int],
    tolerance: int = 1,
    *,
    source: str | Path | None = None,
) -> dict[str, S]:
    """Labels of every utterance of ``frame_lengths_by_utt``, cut or padded to its frame count.

    An utterance without labels, or whose label count differs from its frame count by more
    than ``tolerance``, raises :class:`DataError` naming it and both lengths (``source`` is
    the label file named in the message).
    """
    aligned: dict[str, S] = {}
    for utt, frames in frame_lengths_by_utt.items():
        frames = int(frames)
        if utt not in labels:
            raise DataError(f"no labels for utterance {utt!r}", source)
        values = labels[utt]
        count = len(values)
        if abs(count - frames) > tolerance:
            raise DataError(
                f"utterance {utt!r} has {count} labels but the encoder gives {frames} frames "
                f"(more than {tolerance} apart): were the labels made at another frame rate or with another front-end?",
                source,
            )
        if count >= frames:
            aligned[utt] = values[:frames]
        elif isinstance(values, torch.Tensor):
            aligned[utt] = torch.cat([values, values[-1:].expand(frames - count)]) if count else values
        else:
            aligned[utt] = list(values) + [values[-1]] * (frames - count) if count else values
    return aligned


def read_pseudo_labels(path: str | Path) -> dict[str, int]:
    """A table ``utt -> pseudo-speaker index`` (``audiossl dino cluster`` writes ``utt2pseudo``).

    Bad lines raise a :class:`DataError` with their line. ``path`` may also be a per-utterance
    label store dir (read whole into the dict).
    """
    path = Path(path)
    if path.is_dir() and is_label_store(path):
        store = LabelStore(path)
        return {utt: int(value) for utt, value in zip(store, store.labels.tolist(), strict=True)}
    table = {}
    for entry in read_entries(path):
        line, utt, value = entry.line, entry.key, entry.value
        try:
            label = int(value)
        except ValueError:
            raise DataError(f"pseudo-label of {utt!r} is not an integer: {value!r}", path, line) from None
        if label < 0:
            raise DataError(f"pseudo-label of {utt!r} is negative: {label}", path, line)
        table[utt] = label
    if not table:
        raise DataError("the pseudo-label table is empty", path)
    return table


def pseudo_store_path(table: str | Path) -> Path:
    """Where :func:`~audiossl.cluster.speakers.write_pseudo_labels` puts the label store of a pseudo-label table."""
    return Path(f"{table}.store")


def pseudo_table_stamp(table: str | Path) -> dict[str, Any]:
    """What a table's store records of it (name, size, BLAKE2b digest), to tell whether the table was edited since."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    with open(table, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"table": Path(table).name, "table_bytes": Path(table).stat().st_size, "table_blake2b": digest.hexdigest()}


def pseudo_label_store(path: str | Path) -> LabelStore | None:
    """The per-utterance label store of a pseudo-label ``path``, or None (then read the table).

    ``path`` is a store dir, or a table whose ``<table>.store`` still matches it (the size and
    digest it recorded); an edited table is read as a table.
    """
    path = Path(path)
    if path.is_dir() and is_label_store(path):
        return LabelStore(path)
    beside = pseudo_store_path(path)
    if path.is_file() and is_label_store(beside):
        store = LabelStore(beside)
        if store.per_utterance and store.info.get("table_bytes") == path.stat().st_size:
            stamp = pseudo_table_stamp(path)
            if all(store.info.get(key) == value for key, value in stamp.items()):
                return store
    return None


class StoreRows:
    """Each utterance's row in a per-utterance label store (its rank among the sorted ids), found by binary search.

    The same rows as an :class:`UtteranceTargets` table ``{utt: row}`` over the sorted ids,
    without that table in memory. An absent utterance gets ``missing``, or a :class:`DataError`.
    """

    def __init__(self, store: LabelStore, what: str, missing: torch.Tensor | None = None):
        self.store = store
        self.what = what
        self.missing = missing

    def __call__(self, utt: str, offset: float, num_samples: int, whole: bool) -> torch.Tensor:
        """The 0-d row of ``utt``."""
        row = self.store.row(utt)
        if row is None:
            if self.missing is not None:
                return self.missing
            raise DataError(f"utterance {utt!r} has no {self.what}", self.store.path)
        return torch.tensor(row)


def table_rows(path: str | Path, what: str, missing: torch.Tensor | None = None) -> TargetSource:
    """Rows of a pseudo-label table (:class:`TableRowSpec`): from its label store when there is one."""
    store = pseudo_label_store(path)
    if store is not None:
        return StoreRows(store, what, missing)
    rows = {utt: torch.tensor(row) for row, utt in enumerate(sorted(read_pseudo_labels(path)))}
    return UtteranceTargets(rows, what, path, missing)


def recorded_clusters(label_dir: str | Path) -> int | None:
    """The ``n_clusters`` a label dir's ``info.json`` records, or None."""
    info = Path(label_dir) / INFO
    if not info.is_file():
        return None
    value = json.loads(info.read_text(encoding="utf-8")).get("n_clusters")
    return None if value is None else int(value)


# ----------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class FrameLabelSpec:
    """An objective's declaration: frame labels of ``label_dirs`` at the encoder's token rate (FrameTargets)."""

    label_dirs: tuple[str, ...]
    num_classes: int
    tolerance: int = 1


@dataclass(frozen=True)
class TopicSpec:
    """An objective's declaration: HuBERTopic topics of the label bags of ``label_dirs`` (one target per utterance).

    ``config`` is the :class:`~audiossl.data.topics.TopicConfig`; ``config.target`` picks the
    dominant topic (a 0-d long per utterance) or the distribution ((T,) float).
    """

    label_dirs: tuple[str, ...]
    num_classes: int
    config: Any


@dataclass(frozen=True)
class TableRowSpec:
    """An objective's declaration: each utterance's row in the Kaldi table ``path`` (sorted ids), -1 if absent.

    An utterance missing from the table is a :class:`DataError` on training data; validation
    data gets -1.
    """

    path: str
    what: str = "label"


# ----------------------------------------------------------------------------- token counts


@dataclass(frozen=True)
class TokenClock:
    """How many encoder tokens an utterance of N samples gives, and at what rate: measured once, at build time.

    ``rate``: tokens per second. ``boundaries`` (K,) int64: ``boundaries[k]`` is the fewest
    samples that give ``k + 1`` tokens (token counts never decrease with more samples), so
    :meth:`count` is a binary search; up to ``max_samples`` samples are covered.
    """

    rate: float
    boundaries: torch.Tensor
    max_samples: int

    @classmethod
    def measure(
        cls, tokens_of: Callable[[torch.Tensor], torch.Tensor], sample_rate: int, max_samples: int
    ) -> TokenClock:
        """Measure ``tokens_of`` (samples (N,) -> tokens (N,)) up to ``max_samples`` samples."""
        max_samples = max(int(max_samples), 1)
        with torch.no_grad():
            most = int(tokens_of(torch.tensor([max_samples]))[0])
            wanted = torch.arange(1, most + 1)  # (K,) token counts
            low = torch.zeros_like(wanted)
            high = torch.full_like(wanted, max_samples)
            while bool((low < high).any()):  # the fewest samples giving at least k tokens, for every k at once
                middle = torch.div(low + high, 2, rounding_mode="floor")
                enough = tokens_of(middle) >= wanted
                high = torch.where(enough, middle, high)
                low = torch.where(enough, low, middle + 1)
            probe = torch.tensor([100 * sample_rate, 200 * sample_rate])
            tokens = tokens_of(probe)
        rate = round(float(tokens[1] - tokens[0]) / 100.0, 6)
        return cls(rate, high, max_samples)

    def count(self, samples: int) -> int:
        """Tokens of an utterance of ``samples`` samples."""
        if samples > self.max_samples:
            raise ValueError(f"{samples} samples is past the {self.max_samples} this token clock was measured for")
        return int(torch.searchsorted(self.boundaries, torch.tensor(int(samples)), right=True))


# ----------------------------------------------------------------------------- target sources


class TargetSource(Protocol):
    """One kind of target: ``source(utt, offset, num_samples, whole) -> tensor`` for one utterance.

    ``offset``: seconds from the utterance's start to its (cropped) waveform; ``num_samples``:
    the waveform's length; ``whole``: the waveform is the entire utterance (not cropped).
    Frame targets return (S,) long values; utterance targets a 0-d or (T,) tensor.
    """

    def __call__(self, utt: str, offset: float, num_samples: int, whole: bool) -> torch.Tensor: ...


class FrameTargets:
    """Frame labels of label dirs at the encoder's token rate, cropped like the audio (see the module doc).

    ``num_classes``: labels must lie in ``0..num_classes - 1``; ``tolerance``: frames by which
    an utterance's labels may differ from its token count. Label stores stay on disk (memory
    mapped) and each utterance is read, checked and resampled when a batch asks for it, so
    memory does not grow with the corpus; older text/ark label dirs are read into memory and
    checked whole. An utterance in several dirs takes the labels of the last one.
    """

    def __init__(self, label_dirs: Sequence[str | Path], num_classes: int, clock: TokenClock, tolerance: int = 1):
        if not label_dirs:
            raise DataError("no label dir given for the frame targets")
        self.source = Path(label_dirs[0])
        self.clock = clock
        self.tolerance = tolerance
        self.num_classes = num_classes
        self.parts: list[tuple[Path, Mapping[str, torch.Tensor]]] = []  # later dirs first (they win)
        self.rate: float | None = None
        for label_dir in label_dirs:
            labels, rate = read_labels(label_dir)
            if self.rate is not None and rate != self.rate:
                raise DataError(f"label rate {rate} Hz differs from {self.rate} Hz of {self.source}", label_dir)
            self.rate = rate
            if isinstance(labels, LabelStore):
                largest = int(labels.info.get("max_label", labels.n_clusters - 1))
                if largest >= num_classes:
                    raise DataError(
                        f"labels reach {largest}, outside 0..{num_classes - 1} "
                        "(objective.config.num_clusters is smaller than the k-means k?)",
                        labels.path / "info.json",
                    )
            else:
                labels = {
                    utt: self._checked(utt, values, Path(label_dir)).to(torch.int32) for utt, values in labels.items()
                }
            self.parts.insert(0, (Path(label_dir), labels))

    def _checked(self, utt: str, values: torch.Tensor, label_dir: Path) -> torch.Tensor:
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= self.num_classes):
            raise DataError(
                f"labels of utterance {utt!r} fall outside 0..{self.num_classes - 1} "
                "(objective.config.num_clusters is smaller than the k-means k?)",
                label_dir,
            )
        return values

    def labels_of(self, utt: str) -> torch.Tensor:
        """The stored labels (F,) of ``utt`` at the label rate; a :class:`DataError` when no dir has them."""
        for label_dir, labels in self.parts:
            if isinstance(labels, LabelStore):
                row = labels.row(utt)
                if row is not None:
                    values = torch.from_numpy(labels.array_at(row).astype("int64"))
                    return self._checked(utt, values, label_dir)  # a corrupted store cannot pass a wrong class
            elif utt in labels:
                return labels[utt]
        raise DataError(f"no labels for utterance {utt!r}", self.source)

    def at_token_rate(self, utt: str) -> torch.Tensor:
        """The labels of ``utt`` resampled to the token rate (read anew each time: nothing grows with the corpus)."""
        return convert_label_rate(self.labels_of(utt), self.rate, self.clock.rate)

    def __call__(self, utt: str, offset: float, num_samples: int, whole: bool) -> torch.Tensor:
        """(S,) long labels of the crop of ``utt`` (S = its token count); a :class:`DataError` naming it if misaligned.

        A whole utterance's label count must match its token count within ``tolerance``; a crop
        only needs labels covering its tokens (within ``tolerance``).
        """
        rate = self.clock.rate
        count = self.clock.count(num_samples)
        values = self.at_token_rate(utt)
        if not whole:
            start = round(float(offset) * rate)
            if len(values) - start < count - self.tolerance:
                raise DataError(
                    f"labels of utterance {utt!r} cover {len(values) / rate:.2f} s but its crop needs them up to "
                    f"{(start + count) / rate:.2f} s: were the labels made at another rate or from other audio?",
                    self.source,
                )
            values = values[start : start + count]
        aligned = check_label_alignment({utt: values}, {utt: count}, self.tolerance, source=self.source)[utt]
        return aligned.long()


class UtteranceTargets:
    """One tensor per utterance from a table in memory (``what`` names it in errors, ``source`` its file)."""

    def __init__(
        self,
        table: Mapping[str, torch.Tensor],
        what: str,
        source: str | Path | None = None,
        missing: torch.Tensor | None = None,
    ):
        self.table = table
        self.what = what
        self.source = source
        self.missing = missing

    def __call__(self, utt: str, offset: float, num_samples: int, whole: bool) -> torch.Tensor:
        """The utterance's entry; one not in the table gets ``missing``, or a :class:`DataError` without it."""
        if utt not in self.table:
            if self.missing is not None:
                return self.missing
            raise DataError(f"utterance {utt!r} has no {self.what}", self.source)
        return self.table[utt]


def pad_targets(values: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack one target per item -> (padded (B, ...) , lengths (B,)).

    0-d targets stack to (B,) with length 1 each; sequences are padded along their first
    dimension to the longest, integer ones with :data:`IGNORE`, float ones with 0.
    """
    if all(value.dim() == 0 for value in values):
        return torch.stack(list(values)), torch.ones(len(values), dtype=torch.int64)
    lengths = torch.tensor([value.shape[0] for value in values], dtype=torch.int64)  # (B,)
    first = values[0]
    fill = IGNORE if not first.is_floating_point() else 0.0
    padded = torch.full((len(values), int(lengths.max()), *first.shape[1:]), fill, dtype=first.dtype)  # (B, S, ...)
    for row, value in enumerate(values):
        padded[row, : value.shape[0]] = value
    return padded, lengths


def batch_targets(
    sources: Mapping[str, TargetSource],
    ids: Sequence[str],
    offsets: Sequence[float],
    num_samples: Sequence[int],
    whole: Sequence[bool],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every source's targets for a batch of utterances -> (targets, target_lengths), padded per name."""
    targets, lengths = {}, {}
    for name, source in sources.items():
        values = [
            source(utt, float(offset), int(samples), bool(entire))
            for utt, offset, samples, entire in zip(ids, offsets, num_samples, whole, strict=True)
        ]
        targets[name], lengths[name] = pad_targets(values)
    return targets, lengths
