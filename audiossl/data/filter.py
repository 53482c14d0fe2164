"""Write a data dir without some utterances: every per-utterance table filtered alike, the rest kept.

:func:`filter_data_dir` drops utterances named in a list (``--exclude LIST``) and/or those a
validation found problems with (``--drop-bad``, via :attr:`Problem.subject`). It works on the raw
lines of every table, so a table with problems can still be filtered, and every line it keeps is
byte-for-byte the source line:

- utterance tables (``segments``, ``text``, ``text.*``, ``utt2*``, ``*.scp`` other than wav.scp
  and cmvn.scp; ``wav.scp``/``reco2*`` too when there are no segments): lines of dropped
  utterances go;
- recording tables (``wav.scp``, ``reco2*`` with segments): a recording goes when none of its
  segments is left (or when the list names it);
- ``spk2utt`` is regenerated from the filtered ``utt2spk``; other speaker tables (``spk2gender``,
  ``cmvn.scp``) keep the speakers that still have utterances;
- ``trials*`` lose the trials that name a dropped utterance;
- any other file whose every line starts with an utterance id is filtered as an utterance table;
  other files (``lexicon.txt``, ``words.txt``, JSON) are copied unchanged; folders are not copied
  (wav.scp paths keep pointing at the audio where it is).

The new dir is built beside ``out`` and renamed into place, with ``dropped.txt`` (``<utt> <reason>``,
usable as a LIST for another filter). Unknown ids in a list are an error naming the list's file and
line (``allow_unknown`` turns them into warnings): a typo or a list made for another dir would
otherwise drop nothing without a word.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from audiossl.data.kaldi import kaldi_sort_key, utt2spk_to_spk2utt
from audiossl.data.validate import Problem
from audiossl.errors import DataError, UserError

#: The list of dropped utterances written into the output dir (never filtered as a table itself).
DROPPED_NAME = "dropped.txt"

SPEAKER_TABLES = ("cmvn.scp",)


@dataclass
class Lines:
    """A table file's raw lines with their ids (None for blank lines)."""

    lines: list[bytes]
    keys: list[str | None]

    @classmethod
    def read(cls, path: Path) -> Lines:
        lines = path.read_bytes().splitlines(keepends=True)
        return cls(lines, [_key(line) for line in lines])


def _key(line: bytes) -> str | None:
    fields = line.split(maxsplit=1)
    return fields[0].decode("utf-8", errors="replace") if fields else None


@dataclass
class FilterReport:
    """What :func:`filter_data_dir` did."""

    out: Path
    kept: int
    dropped: dict[str, str]
    """Dropped utterance -> why (the list's file and line, or the validation problem)."""
    recordings_dropped: list[str] = field(default_factory=list)
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Table name -> (lines before, lines after), for every table filtered or regenerated."""
    copied: list[str] = field(default_factory=list)
    """Files copied unchanged (not per-utterance tables)."""
    not_copied: list[str] = field(default_factory=list)
    """Folders of the source dir left where they are."""


@dataclass
class Structure:
    """The ids of a source data dir, read leniently from its raw tables."""

    utterances: list[str]
    recording_of: dict[str, str]
    """Utterance -> recording (the utterance itself without segments)."""
    has_segments: bool

    @classmethod
    def read(cls, root: Path) -> Structure:
        if not (root / "wav.scp").is_file():
            raise DataError("no wav.scp: not a data dir", root)
        if (root / "segments").is_file():
            recording_of = {}
            for line in (root / "segments").read_bytes().splitlines():
                fields = line.split()
                if fields:
                    recording_of[_key(line)] = fields[1].decode("utf-8", errors="replace") if len(fields) > 1 else ""
            return cls(list(recording_of), recording_of, True)
        keys = [key for key in Lines.read(root / "wav.scp").keys if key is not None]
        return cls(keys, {key: key for key in keys}, False)

    @property
    def recordings(self) -> set[str]:
        return set(self.recording_of.values())

    def utterances_of(self, recording: str) -> list[str]:
        return [utt for utt, rec in self.recording_of.items() if rec == recording]


def read_id_list(
    path: str | Path, structure: Structure, *, allow_unknown: bool = False
) -> tuple[dict[str, str], list[str]]:
    """Utterances a list names -> ``"LIST:line"``, and warnings for ids it names that the dir lacks.

    One id per line (its first field; the rest of the line is ignored, so ``dropped.txt`` works);
    blank lines and ``#`` comments are skipped. A recording id (with segments) names all its
    segments. Unknown ids raise :class:`DataError` naming the line unless ``allow_unknown``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("list of ids not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a list of ids (one per line)", path) from None
    known = set(structure.utterances)
    recordings = structure.recordings if structure.has_segments else set()
    named: dict[str, str] = {}
    warnings: list[str] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            raise DataError(f"not valid UTF-8 (byte {error.start})", path, number) from None
        if not line or line.startswith("#"):
            continue
        name = line.split()[0]
        where = f"{path}:{number}"
        if name in known:
            named.setdefault(name, where)
        elif name in recordings:
            for utt in structure.utterances_of(name):
                named.setdefault(utt, f"{where} (recording {name})")
        else:
            message = f"{name!r} is neither an utterance nor a recording of the data dir"
            if name.endswith(":") or "/" in name:
                message += " (the list holds ids, one per line; to drop what `data validate` reports use --drop-bad)"
            if not allow_unknown:
                raise DataError(message + "; --allow-unknown skips such lines", path, number)
            warnings.append(f"{where}: {message}; skipped")
    return named, warnings


def bad_utterances(problems: Iterable[Problem], structure: Structure) -> tuple[dict[str, str], list[Problem]]:
    """Utterances the ``problems`` are about -> the problem, and the problems about no single utterance.

    A problem about a recording (wav.scp, reco2dur) names all its segments; one about an id that is
    in no table defining utterances (an orphan line) drops that id's lines too.
    """
    bad: dict[str, str] = {}
    other: list[Problem] = []
    for problem in problems:
        subject = problem.subject
        if subject is None:
            other.append(problem)
            continue
        table = Path(problem.path).name
        recording_table = structure.has_segments and (table == "wav.scp" or table.startswith("reco2"))
        if recording_table:
            for utt in structure.utterances_of(subject):
                bad.setdefault(utt, str(problem))
            if not structure.utterances_of(subject):
                other.append(problem)  # a recording no segment uses: nothing to drop
        else:
            bad.setdefault(subject, str(problem))
    return bad, other


def check_output(source: Path, out: Path, replace: bool) -> None:
    """Refuse an ``out`` that is the source dir, or that holds files (unless ``replace``)."""
    if not source.is_dir():
        raise DataError("data directory not found", source)
    if out.resolve() == source.resolve():
        raise UserError("the output must be a new data dir, not the one being filtered", out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not replace:
        raise UserError("the output already exists and is not empty (--force replaces it)", out)


def filter_data_dir(
    source: str | Path, out: str | Path, drop: Mapping[str, str], *, replace: bool = False
) -> FilterReport:
    """Write ``source`` without the utterances ``drop`` (utterance -> reason) to ``out``, atomically.

    ``out`` must not be ``source``; an ``out`` that holds files is refused unless ``replace`` (then
    it is swapped for the new dir only once that is complete).
    """
    source, out = Path(source), Path(out)
    check_output(source, out, replace)
    structure = Structure.read(source)
    dropped = {utt: drop[utt] for utt in sorted(drop, key=kaldi_sort_key)}
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        report = _write(source, work, structure, dropped)
        report.out = out
        _swap_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _write(source: Path, work: Path, structure: Structure, dropped: dict[str, str]) -> FilterReport:
    gone = set(dropped)
    kept_utts = {utt for utt in structure.utterances if utt not in gone}
    kept_recordings = {structure.recording_of[utt] for utt in kept_utts}
    gone_recordings = sorted(structure.recordings - kept_recordings, key=kaldi_sort_key)
    report = FilterReport(work, len(kept_utts), dropped, gone_recordings if structure.has_segments else [])
    utt2spk: dict[str, str] | None = None
    deferred: list[Path] = []  # speaker tables: need the filtered utt2spk first
    for path in sorted(source.iterdir()):
        name = path.name
        if name.startswith("."):
            continue
        if path.is_dir():
            report.not_copied.append(name + "/")
            continue
        if name == DROPPED_NAME:
            continue  # the previous filter's list; this run writes its own
        kind = _kind(name, structure)
        if kind == "other" and _all_keys_are_utterances(path, structure):
            kind = "utterance"
        if kind == "other":
            shutil.copyfile(path, work / name)
            report.copied.append(name)
            continue
        if kind == "speaker":
            deferred.append(path)
            continue
        table = Lines.read(path)
        if kind == "utterance":
            keep = [key is None or key not in gone for key in table.keys]
        elif kind == "recording":
            keep = [key is None or key not in gone_recordings for key in table.keys]
        else:  # trials: every field may name an utterance
            keep = [not (set(_fields(line)) & gone) for line in table.lines]
        lines = [line for line, ok in zip(table.lines, keep, strict=True) if ok]
        (work / name).write_bytes(b"".join(lines))
        report.tables[name] = (_count(table.lines), _count(lines))
        if name == "utt2spk":
            utt2spk = {
                key: _fields(line)[1]
                for line, key in zip(lines, map(_key, lines), strict=True)
                if key and len(_fields(line)) > 1
            }
    for path in deferred:
        _write_speaker_table(path, work, utt2spk, gone, report)
    with open(work / DROPPED_NAME, "w", encoding="utf-8") as handle:
        for utt, reason in dropped.items():
            handle.write(f"{utt} {' '.join(reason.split())}\n")
    return report


def _write_speaker_table(
    path: Path, work: Path, utt2spk: dict[str, str] | None, gone: set[str], report: FilterReport
) -> None:
    table = Lines.read(path)
    before = _count(table.lines)
    if path.name == "spk2utt" and utt2spk is not None:
        text = "".join(f"{spk} {utts}\n" for spk, utts in utt2spk_to_spk2utt(utt2spk).items())
        (work / path.name).write_text(text, encoding="utf-8")
        report.tables[path.name] = (before, len(utt2spk_to_spk2utt(utt2spk)))
        return
    if path.name == "spk2utt":  # only spk2utt: drop the utterances from each speaker's list
        lines = []
        for line in table.lines:
            fields = _fields(line)
            left = [utt for utt in fields[1:] if utt not in gone]
            if not fields or left:
                lines.append(line if len(left) == len(fields) - 1 else f"{fields[0]} {' '.join(left)}\n".encode())
    else:
        speakers = None if utt2spk is None else set(utt2spk.values())
        lines = [
            line
            for line, key in zip(table.lines, table.keys, strict=True)
            if speakers is None or key is None or key in speakers
        ]
    (work / path.name).write_bytes(b"".join(lines))
    report.tables[path.name] = (before, _count(lines))


def _kind(name: str, structure: Structure) -> str:
    """How a file of the data dir is keyed: utterance, recording, speaker, trials or other."""
    if name in ("wav.scp",) or name.startswith("reco2"):
        return "recording" if structure.has_segments else "utterance"
    if name == "spk2utt" or name.startswith("spk2") or name in SPEAKER_TABLES:
        return "speaker"
    if name.startswith("trials"):
        return "trials"
    if name in ("segments", "text") or name.startswith(("text.", "utt2")) or name.endswith(".scp"):
        return "utterance"
    return "other"


def _all_keys_are_utterances(path: Path, structure: Structure) -> bool:
    try:
        keys = [key for key in Lines.read(path).keys if key is not None]
    except OSError:
        return False
    known = set(structure.utterances)
    return bool(keys) and all(key in known for key in keys)


def _fields(line: bytes) -> list[str]:
    return line.decode("utf-8", errors="replace").split()


def _count(lines: list[bytes]) -> int:
    return sum(1 for line in lines if line.strip())


def _swap_into_place(work: Path, out: Path) -> None:
    """Rename the finished ``work`` dir to ``out``; an existing ``out`` is removed only afterwards."""
    os.chmod(work, 0o777 & ~_umask())
    if not out.exists():
        os.replace(work, out)
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
        os.replace(work, out)
        return
    old = out.parent / f".{out.name}.old.{os.getpid()}"
    os.replace(out, old)
    try:
        os.replace(work, out)
    except BaseException:
        os.replace(old, out)
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
