"""Kaldi-style data directories: ``wav.scp``, ``segments``, ``utt2spk``, ``text``, ``utt2<label>``.

Every table is a text file of ``<id> <value>`` lines, sorted by id in byte order
(``LC_ALL=C sort``). Reading keeps line numbers so that every problem names its file
and line; writing is atomic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from audiossl.errors import DataError
from audiossl.fileio import atomic_write

_LINE = re.compile(r"([^ \t]*)[ \t]*(.*)", re.DOTALL)

#: Tables that are not per-utterance labels, in the order ``DataDir.save`` writes them.
CORE_TABLES = ("wav.scp", "segments", "utt2spk", "spk2utt", "text", "utt2dur", "utt2num_samples", "reco2dur")


@dataclass(frozen=True)
class Entry:
    """One line of a table: its id, the rest of the line, and where it came from."""

    key: str
    value: str
    line: int


def kaldi_sort_key(key: str) -> bytes:
    """Kaldi's sort order is byte order (``LC_ALL=C sort``)."""
    return key.encode("utf-8")


def split_line(line: str) -> tuple[str, str]:
    """Split a table line at its first space or tab: ``(id, value)``; the value keeps its inner spacing."""
    key, value = _LINE.match(line.strip(" \t\r\n")).groups()
    return key, value


def read_entries(path: str | Path, allow_empty_value: bool = False) -> list[Entry]:
    """Read ``<id> <value>`` lines in file order; malformed lines and non-UTF-8 bytes are errors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a table file", path) from None
    entries = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"not valid UTF-8 (byte {error.start})", path, number) from None
        line = line.strip()
        if not line:
            continue
        key, value = split_line(line)
        if not value and not allow_empty_value:
            raise DataError(f"line has an id {key!r} but no value", path, number)
        entries.append(Entry(key, value, number))
    return entries


def read_table(path: str | Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a table into an ordered dict; duplicate ids are errors."""
    table: dict[str, str] = {}
    seen: dict[str, int] = {}
    for entry in read_entries(path, allow_empty_value):
        if entry.key in table:
            raise DataError(f"duplicate id {entry.key!r} (first on line {seen[entry.key]})", path, entry.line)
        table[entry.key] = entry.value
        seen[entry.key] = entry.line
    return table


def write_table(path: str | Path, table: Mapping[str, object] | Iterable[tuple[str, object]]) -> None:
    """Write ``<id> <value>`` lines sorted in Kaldi order, atomically."""
    items = table.items() if isinstance(table, Mapping) else table
    rows = sorted(((str(k), str(v)) for k, v in items), key=lambda kv: kaldi_sort_key(kv[0]))
    for key, _ in rows:
        if not key or any(c.isspace() for c in key):
            raise DataError(f"id {key!r} is empty or contains whitespace", path)
    with atomic_write(path) as handle:
        for key, value in rows:
            handle.write(f"{key} {value}\n")


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, str]:
    """Invert utt2spk: speaker -> space-separated sorted utterance ids."""
    groups: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        groups.setdefault(spk, []).append(utt)
    return {spk: " ".join(sorted(utts, key=kaldi_sort_key)) for spk, utts in groups.items()}


@dataclass
class Segment:
    """A span of a recording: ``<utt> <reco> <start> <end>`` in seconds (end -1: to the end)."""

    recording: str
    start: float
    end: float
    #: Line of the ``segments`` file it was read from (None when made in code); not compared.
    line: int | None = field(default=None, compare=False)


@dataclass
class DataDir:
    """An in-memory Kaldi data directory.

    ``wav_scp`` maps recording ids to wav.scp values (a path, or a command ending in ``|``).
    Without ``segments`` recording ids are utterance ids. ``labels`` holds every other
    ``utt2<name>`` table (utt2emo, utt2lang, ...) under ``<name>``.
    """

    wav_scp: dict[str, str] = field(default_factory=dict)
    segments: dict[str, Segment] | None = None
    utt2spk: dict[str, str] = field(default_factory=dict)
    text: dict[str, str] | None = None
    utt2dur: dict[str, float] | None = None
    utt2num_samples: dict[str, int] | None = None
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def utterance_ids(self) -> list[str]:
        """Utterance ids in Kaldi order."""
        ids = self.segments.keys() if self.segments is not None else self.wav_scp.keys()
        return sorted(ids, key=kaldi_sort_key)

    @property
    def spk2utt(self) -> dict[str, str]:
        return utt2spk_to_spk2utt(self.utt2spk)

    @classmethod
    def load(cls, path: str | Path) -> DataDir:
        """Read a data dir; values are parsed (durations as floats, segments as spans)."""
        path = Path(path)
        if not path.is_dir():
            raise DataError("data directory not found", path)
        data = cls(path=path)
        data.wav_scp = read_table(path / "wav.scp")
        if (path / "segments").exists():
            data.segments = {}
            for entry in read_entries(path / "segments"):
                fields = entry.value.split()
                if len(fields) != 3:
                    raise DataError(
                        f"segment {entry.key!r}: expected '<utt> <recording> <start> <end>'",
                        path / "segments",
                        entry.line,
                    )
                try:
                    start, end = float(fields[1]), float(fields[2])
                except ValueError:
                    message = f"segment {entry.key!r}: start and end must be numbers (seconds)"
                    raise DataError(message, path / "segments", entry.line) from None
                if entry.key in data.segments:
                    raise DataError(f"duplicate id {entry.key!r}", path / "segments", entry.line)
                if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or (end != -1 and end <= start):
                    raise DataError(
                        f"segment {entry.key!r}: bad span: start {fields[1]} s, end {fields[2]} s (the end must be "
                        "after the start, or -1 for the end of the recording)",
                        path / "segments",
                        entry.line,
                    )
                data.segments[entry.key] = Segment(fields[0], start, end, entry.line)
        if (path / "utt2spk").exists():
            data.utt2spk = read_table(path / "utt2spk")
        if (path / "text").exists():
            data.text = read_table(path / "text", allow_empty_value=True)
        if (path / "utt2dur").exists():
            data.utt2dur = _parse_numbers(path / "utt2dur", float)
        if (path / "utt2num_samples").exists():
            data.utt2num_samples = _parse_numbers(path / "utt2num_samples", int)
        for table in sorted(path.glob("utt2*")):
            name = table.name[len("utt2") :]
            # Label tables are plain names (utt2emo, utt2lang); skip core tables, folders and
            # files with an extension (utt2.wav, utt2emo.bak), which are not tables.
            if table.name in CORE_TABLES or name in ("spk", "") or "." in name or not table.is_file():
                continue
            data.labels[name] = read_table(table)
        return data

    def save(self, path: str | Path) -> Path:
        """Write every table (spk2utt regenerated from utt2spk), each atomically."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        write_table(path / "wav.scp", self.wav_scp)
        if self.segments is not None:
            write_table(
                path / "segments",
                {u: f"{s.recording} {s.start:.3f} {s.end:.3f}" for u, s in self.segments.items()},
            )
        if self.utt2spk:
            write_table(path / "utt2spk", self.utt2spk)
            write_table(path / "spk2utt", self.spk2utt)
        if self.text is not None:
            write_table(path / "text", self.text)
        if self.utt2dur is not None:
            write_table(path / "utt2dur", {u: f"{d:.4f}" for u, d in self.utt2dur.items()})
        if self.utt2num_samples is not None:
            write_table(path / "utt2num_samples", self.utt2num_samples)
        for name, table in self.labels.items():
            write_table(path / f"utt2{name}", table)
        self.path = path
        return path


def _parse_numbers(path: Path, kind: type) -> dict:
    out = {}
    for entry in read_entries(path):
        try:
            out[entry.key] = kind(entry.value)
        except ValueError:
            raise DataError(f"expected a {kind.__name__}, got {entry.value!r}", path, entry.line) from None
    return out
