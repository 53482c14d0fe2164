"""Check and repair Kaldi-style data directories.

:func:`validate_data_dir` collects every problem it can find (it never stops at the first)
and names the file and line of each. :func:`fix_data_dir` repairs what can be repaired
without judgement (sort order, derived tables) and *reports* the rest: it never deletes an
utterance, unlike Kaldi's ``fix_data_dir.sh`` which silently filters to the common ids.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from audiossl.audio.io import MAX_SEGMENT_OVERSHOOT, channel_option
from audiossl.data.kaldi import (
    CORE_TABLES,
    kaldi_sort_key,
    read_entries,
    split_line,
    utt2spk_to_spk2utt,
    write_table,
)
from audiossl.data.wav_scp import is_pipe, pipes_allowed, read_wav_scp_entry, read_wav_scp_info, refusal
from audiossl.errors import AudioError, DataError
from audiossl.fileio import atomic_write
from audiossl.progress import progress

#: utt2dur / reco2dur may differ from the audio by this much (seconds) before it is a problem.
DURATION_TOLERANCE = 0.01


@dataclass(frozen=True)
class Problem:
    """One problem in a data dir, anchored at a file and (where there is one) a line."""

    path: str
    line: int | None
    message: str
    subject: str | None = None
    """The id the problem is about when it is about one entry: an utterance id, or a recording id for
    wav.scp/reco2dur problems (``audiossl data filter --drop-bad`` drops it); None for problems of a
    whole table (sort order, line endings) or of a speaker (spk2utt is regenerated)."""

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class _Row:
    key: str
    value: str
    line: int


class _Checker:
    """Collects problems while reading the tables of one data dir."""

    def __init__(self, root: Path):
        self.root = root
        self.problems: list[Problem] = []

    def add(self, path: Path | str, line: int | None, message: str, subject: str | None = None) -> None:
        self.problems.append(Problem(str(path), line, message, subject))

    def read(self, name: str, allow_empty_value: bool = False) -> dict[str, _Row] | None:
        """Read a table leniently: bad lines become problems and are skipped. None if absent."""
        path = self.root / name
        if path.is_dir():
            self.add(path, None, "is a directory, expected a table file")
            return None
        if not path.is_file():
            return None
        try:
            raw = path.read_bytes()
        except OSError as error:
            self.add(path, None, f"cannot read: {error.strerror}")
            return {}
        rows: dict[str, _Row] = {}
        previous: _Row | None = None
        first_unsorted: tuple[_Row, _Row] | None = None
        unsorted = 0
        if b"\r" in raw:  # audiossl reads CRLF tables, Kaldi's tools take the \r as part of the value
            line = raw[: raw.index(b"\r")].count(b"\n") + 1
            self.add(
                path,
                line,
                "Windows (CRLF) line endings; Kaldi tools read the \\r as part of each value; "
                "`audiossl data fix` rewrites them",
            )
        for number, line_bytes in enumerate(raw.splitlines(), start=1):
            try:
                line = line_bytes.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                self.add(path, number, f"not valid UTF-8 (byte {error.start})", _key_of(line_bytes))
                continue
            if not line:
                continue
            key, value = split_line(line)
            row = _Row(key, value, number)
            if not row.value and not allow_empty_value:
                self.add(path, number, f"id {key!r} has no value", key)
                continue
            if key in rows:
                self.add(path, number, f"duplicate id {key!r} (first on line {rows[key].line})", key)
                continue
            rows[key] = row
            if previous is not None and kaldi_sort_key(key) < kaldi_sort_key(previous.key):
                unsorted += 1
                first_unsorted = first_unsorted or (row, previous)
            previous = row
        if first_unsorted is not None:
            row, before = first_unsorted
            self.add(
                path,
                row.line,
                f"not sorted in Kaldi (LC_ALL=C byte) order: {row.key!r} comes after {before.key!r} "
                f"(line {before.line}); {unsorted} line(s) out of order; `audiossl data fix` sorts every table",
            )
        return rows

    def numbers(self, name: str, rows: dict[str, _Row] | None, kind: type) -> dict[str, tuple[float, int]]:
        """Parse a table of positive numbers into ``id -> (value, line)``; bad values become problems."""
        values = {}
        for row in (rows or {}).values():
            try:
                value = kind(row.value)
            except ValueError:
                self.add(self.root / name, row.line, f"expected a positive {kind.__name__}, got {row.value!r}", row.key)
                continue
            if value <= 0:
                self.add(self.root / name, row.line, f"expected a positive {kind.__name__}, got {row.value!r}", row.key)
                continue
            values[row.key] = (value, row.line)
        return values

    def same_ids(self, name: str, rows: dict[str, _Row] | None, utterances: dict[str, _Row], defined_in: str) -> None:
        """Every utterance has exactly one entry in table ``name`` and vice versa."""
        if rows is None:
            return
        for key, row in rows.items():
            if key not in utterances:
                self.add(self.root / name, row.line, f"utterance {key!r} is not in {defined_in}", key)
        for key, row in utterances.items():
            if key not in rows:
                self.add(self.root / name, None, f"no entry for utterance {key!r} ({defined_in} line {row.line})", key)


def _key_of(line: bytes) -> str | None:
    """The id of a table line whose value is not UTF-8, when the id itself is."""
    fields = line.split(maxsplit=1)
    try:
        return fields[0].decode("utf-8") if fields else None
    except UnicodeDecodeError:
        return None


def _label_tables(root: Path) -> list[str]:
    """Every ``utt2<name>`` table besides utt2spk/utt2dur/utt2num_samples."""
    return sorted(
        p.name for p in root.glob("utt2*") if p.is_file() and p.name not in CORE_TABLES and p.name != "utt2spk"
    )


def _parse_segments(check: _Checker, rows: dict[str, _Row] | None) -> dict[str, tuple[str, float, float, int]]:
    """``utt -> (recording, start, end, line)`` for the well-formed lines of ``segments``."""
    spans = {}
    for row in (rows or {}).values():
        fields = row.value.split()
        if len(fields) != 3:
            message = f"segment {row.key!r}: expected '<utt> <recording> <start> <end>'"
            check.add(check.root / "segments", row.line, message, row.key)
            continue
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            message = f"segment {row.key!r}: start and end must be numbers (seconds)"
            check.add(check.root / "segments", row.line, message, row.key)
            continue
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or (end != -1 and end <= start):
            message = f"segment {row.key!r}: bad span: start {fields[1]} s, end {fields[2]} s (end -1: to the end)"
            check.add(check.root / "segments", row.line, message, row.key)
            continue
        spans[row.key] = (fields[0], start, end, row.line)
    return spans


def validate_data_dir(
    path: str | Path,
    *,
    check_audio: bool = True,
    allow_pipes: bool | None = None,
    sample_rate: int | None = None,
    resample_to: int | None = None,
    notes: list[Problem] | None = None,
    num_jobs: int = 1,
    audio_facts: list[AudioFact] | None = None,
) -> list[Problem]:
    """Return every problem found in the data dir at ``path`` ([] when it is clean).

    Tables: Kaldi sort order, duplicate ids, malformed lines, non-UTF-8 bytes, and id
    consistency between wav.scp/segments and utt2spk, spk2utt, text, utt2dur,
    utt2num_samples and every utt2<label>. With ``check_audio`` every recording is read:
    missing, unreadable, truncated, empty or NaN/Inf audio; sample rates (mixed, or not
    ``sample_rate``); segments past the end of their recording; utt2dur/utt2num_samples/
    reco2dur disagreeing with the audio.

    ``resample_to``: the rate the data will be read at (audiossl's loaders resample every
    recording to the rate they are asked for). Mixed rates, or rates other than it, are then not
    problems; what will happen to them is appended to ``notes`` (when given): one note per native
    rate that differs, with its count and first wav.scp line, worded as a warning for rates below
    ``resample_to`` (upsampled audio has nothing above half its native rate). ``sample_rate``
    (strict: every recording must already be at it) wins over ``resample_to`` when both are set.

    wav.scp pipe commands run only when allowed
    (``allow_pipes``; None: the process policy, see :mod:`audiossl.data.wav_scp`): with audio
    checks, a refused pipe raises :class:`~audiossl.data.wav_scp.PipeRefused` naming its line
    before any audio is read (a policy, not a problem of the data dir).

    Reading the audio is the slow part: ``num_jobs`` processes share the recordings, or shards
    read them apart (:func:`read_audio_facts` with ``shard="I/N"``, saved with
    :func:`save_audio_facts`) and ``audio_facts`` (every shard's, :func:`merge_audio_facts`)
    replaces the reading. The problems and their order are the same either way: the facts come
    back in wav.scp order and every check over them runs here.
    """
    root = Path(path)
    if not root.is_dir():
        return [Problem(str(root), None, "data directory not found")]
    check = _Checker(root)
    wav_scp = check.read("wav.scp")
    if wav_scp is None:
        check.add(root / "wav.scp", None, "file not found (every data dir needs wav.scp)")
        wav_scp = {}
    segment_rows = check.read("segments")
    segments = _parse_segments(check, segment_rows)
    utterances = segment_rows if segment_rows is not None else wav_scp
    defined_in = "segments" if segment_rows is not None else "wav.scp"
    for utt, (recording, _, _, line) in segments.items():
        if recording not in wav_scp:
            check.add(root / "segments", line, f"segment {utt!r}: its recording {recording!r} is not in wav.scp", utt)

    utt2spk = check.read("utt2spk")
    check.same_ids("utt2spk", utt2spk, utterances, defined_in)
    _check_spk2utt(check, utt2spk)
    check.same_ids("text", check.read("text", allow_empty_value=True), utterances, defined_in)
    utt2dur_rows = check.read("utt2dur")
    check.same_ids("utt2dur", utt2dur_rows, utterances, defined_in)
    utt2dur = check.numbers("utt2dur", utt2dur_rows, float)
    num_samples_rows = check.read("utt2num_samples")
    check.same_ids("utt2num_samples", num_samples_rows, utterances, defined_in)
    utt2num_samples = check.numbers("utt2num_samples", num_samples_rows, int)
    reco2dur_rows = check.read("reco2dur")
    reco2dur = check.numbers("reco2dur", reco2dur_rows, float)
    for key, row in (reco2dur_rows or {}).items():
        if key not in wav_scp:
            check.add(root / "reco2dur", row.line, f"recording {key!r} is not in wav.scp", key)
    for name in _label_tables(root):
        check.same_ids(name, check.read(name), utterances, defined_in)

    if check_audio:
        if audio_facts is None:
            audio_facts = read_audio_facts(root, allow_pipes=allow_pipes, num_jobs=num_jobs).facts
        elif [fact.recording for fact in audio_facts] != list(wav_scp):
            raise DataError("the audio facts are of other recordings than wav.scp's (rerun the shards)", root)
        rates = (sample_rate, resample_to if sample_rate is None else None)
        found = _check_audio(check, wav_scp, segments, utt2dur, utt2num_samples, reco2dur, rates, audio_facts)
        if rates[1] is not None and notes is not None:
            notes.extend(resampling_notes(root, wav_scp, found, rates[1]))
    return check.problems


def resampling_notes(
    root: Path, wav_scp: dict[str, _Row], found: dict[str, tuple[int, int]], target: int
) -> list[Problem]:
    """One note per native rate other than ``target``: how many recordings, the first one's line."""
    by_rate: dict[int, list[str]] = {}
    for recording, (_, rate) in found.items():
        if rate != target:
            by_rate.setdefault(rate, []).append(recording)
    notes = []
    for rate, recordings in sorted(by_rate.items()):
        first = wav_scp[recordings[0]]
        what = "downsampled" if rate > target else "UPSAMPLED (no content above " + f"{rate / 2000:g} kHz)"
        message = f"{len(recordings)} recording(s) at {rate} Hz will be {what} to {target} Hz (first: {first.value})"
        notes.append(Problem(str(root / "wav.scp"), first.line, message))
    return notes


@dataclass(frozen=True)
class AudioFact:
    """What reading one recording found: its length, rate and channels, or the problem reading it."""

    recording: str
    samples: int | None = None
    rate: int | None = None
    channels: int | None = None
    problem: Problem | None = None


@dataclass
class AudioFacts:
    """The facts of a block of wav.scp's recordings (in wav.scp order), with the shard's bookkeeping."""

    meta: dict
    facts: list[AudioFact]


def read_audio_facts(
    path: str | Path, *, allow_pipes: bool | None = None, shard: str | None = None, num_jobs: int = 1
) -> AudioFacts:
    """Read shard ``shard`` (``"I/N"``; None: all) of the recordings of wav.scp, in ``num_jobs`` processes."""
    from audiossl.data.shards import Shard, fingerprint, part_meta, run_jobs, split_range

    root = Path(path)
    wav_scp = _Checker(root).read("wav.scp") or {}
    _check_pipes(root, [(row.value, row.line) for row in wav_scp.values()], allow_pipes)
    shard_ = Shard.parse(shard)
    recordings = list(wav_scp)
    block = shard_.range(len(recordings))
    ranges = [r for r in split_range(block, max(1, num_jobs)) if len(r)] or [block]
    results = run_jobs(
        _ReadAudio(str(root), allow_pipes),
        ranges,
        num_jobs=num_jobs,
        desc="reading audio",
        total=len(block),
        unit="rec",
        describe=lambda task: f"recordings {task.start}..{task.stop - 1} of {root / 'wav.scp'}",
    )
    meta = part_meta(shard_, block, fingerprint(f"{r} {wav_scp[r].value}" for r in recordings))
    return AudioFacts(meta, [fact for result in results for fact in result])


@dataclass
class _ReadAudio:
    """Read a block of wav.scp's recordings (picklable: runs in a job process)."""

    root: str
    allow_pipes: bool | None

    def __call__(self, block: range) -> list[AudioFact]:
        from audiossl.data.shards import advance

        root = Path(self.root)
        wav_scp = _Checker(root).read("wav.scp") or {}
        allow_pipes = _check_pipes(root, [(row.value, row.line) for row in wav_scp.values()], self.allow_pipes)
        facts = []
        for recording in list(wav_scp)[block.start : block.stop]:
            row = wav_scp[recording]
            try:
                samples, rate = read_wav_scp_entry(
                    row.value, allow_pipes=allow_pipes, source=(root / "wav.scp", row.line), mono=False
                )
            except AudioError as error:
                problem = Problem(str(error.path or root / "wav.scp"), error.line, error.message, recording)
                facts.append(AudioFact(recording, problem=problem))
            else:
                facts.append(AudioFact(recording, int(samples.shape[-1]), int(rate), int(samples.shape[0])))
            advance()
        return facts


def save_audio_facts(facts: AudioFacts, path: str | Path) -> None:
    """Write a shard's audio facts as JSON (atomically)."""
    rows = [
        [f.recording, f.samples, f.rate, f.channels, None if f.problem is None else list(asdict(f.problem).values())]
        for f in facts.facts
    ]
    with atomic_write(path) as handle:
        json.dump({**facts.meta, "_facts": rows}, handle)


def merge_audio_facts(paths: list[str | Path]) -> list[AudioFact]:
    """The facts of every shard's file, checked to be one complete run, in wav.scp order."""
    from audiossl.data.shards import check_parts

    loaded = []
    for path in paths:
        try:
            loaded.append((str(path), json.loads(Path(path).read_text(encoding="utf-8"))))
        except (OSError, ValueError) as error:
            raise DataError(f"unreadable audio facts of a validate shard ({error})", path) from None
    facts = []
    for _, meta in check_parts(loaded, "the audio facts"):
        for recording, samples, rate, channels, problem in meta["_facts"]:
            facts.append(AudioFact(recording, samples, rate, channels, None if problem is None else Problem(*problem)))
    return facts


def _check_spk2utt(check: _Checker, utt2spk: dict[str, _Row] | None) -> None:
    spk2utt = check.read("spk2utt")
    if spk2utt is None or utt2spk is None:
        return
    expected = utt2spk_to_spk2utt({key: row.value for key, row in utt2spk.items()})
    path = check.root / "spk2utt"
    for speaker, row in spk2utt.items():
        if speaker not in expected:
            check.add(path, row.line, f"speaker {speaker!r} has no utterances in utt2spk")
        elif set(row.value.split()) != set(expected[speaker].split()):
            check.add(path, row.line, f"utterances of speaker {speaker!r} disagree with utt2spk (`audiossl data fix`)")
    for speaker in expected:
        if speaker not in spk2utt:
            check.add(path, None, f"speaker {speaker!r} of utt2spk is missing (`audiossl data fix` regenerates it)")


def _check_audio(
    check: _Checker,
    wav_scp: dict[str, _Row],
    segments: dict[str, tuple[str, float, float, int]],
    utt2dur: dict[str, tuple[float, int]],
    utt2num_samples: dict[str, tuple[float, int]],
    reco2dur: dict[str, tuple[float, int]],
    rates: tuple[int | None, int | None],
    facts: list[AudioFact],
) -> dict[str, tuple[int, int]]:
    """Check what reading every recording found, and the durations and spans that refer to it.

    ``rates``: (every recording must be at this rate, or None; the data will be resampled to this
    rate, or None: then mixed rates are not a problem). Returns recording -> (samples, rate).
    """
    sample_rate, resample_to = rates
    root = check.root
    found: dict[str, tuple[int, int]] = {}  # recording -> (num_samples, sample_rate)
    channels: dict[str, int] = {}  # recording -> channel count
    for fact in facts:
        if fact.problem is not None:
            check.problems.append(fact.problem)
            continue
        found[fact.recording] = (fact.samples, fact.rate)
        channels[fact.recording] = fact.channels

    counts = Counter(rate for _, rate in found.values())
    expected_rate = sample_rate if sample_rate is not None else (counts.most_common(1)[0][0] if counts else None)
    for recording, (_, rate) in found.items():
        if rate != expected_rate and resample_to is None:
            reason = "expected" if sample_rate is not None else "mixed sample rates; most recordings have"
            row = wav_scp[recording]
            message = f"{row.value}: sample rate {rate} Hz ({reason} {expected_rate} Hz)"
            check.add(root / "wav.scp", row.line, message, recording)
    _check_channels(check, wav_scp, channels)

    actual: dict[str, tuple[float, int]] = {}  # utterance -> (seconds, samples at the native rate)
    if segments or (root / "segments").is_file():
        for utt, (recording, start, end, line) in segments.items():
            if recording not in found:
                continue
            length, rate = found[recording]
            duration = length / rate
            if start >= duration:
                message = f"segment {utt!r}: start {start} s is past the end of {recording!r} ({duration:.3f} s)"
                check.add(root / "segments", line, message, utt)
                continue
            if end > duration + MAX_SEGMENT_OVERSHOOT:
                message = f"segment {utt!r}: end {end} s is past the end of {recording!r} ({duration:.3f} s)"
                check.add(root / "segments", line, message, utt)
                continue
            last = length if end < 0 else min(round(end * rate), length)
            actual[utt] = ((last - round(start * rate)) / rate, last - round(start * rate))
    else:
        actual = {recording: (length / rate, length) for recording, (length, rate) in found.items()}

    _compare("utt2dur", check, utt2dur, {u: a[0] for u, a in actual.items()}, DURATION_TOLERANCE, "s")
    _compare("utt2num_samples", check, utt2num_samples, {u: a[1] for u, a in actual.items()}, 1, "samples")
    reco_durations = {recording: length / rate for recording, (length, rate) in found.items()}
    _compare("reco2dur", check, reco2dur, reco_durations, DURATION_TOLERANCE, "s")
    return found


def _check_channels(check: _Checker, wav_scp: dict[str, _Row], channels: dict[str, int]) -> None:
    """Report recordings whose channel count differs from most of the data dir's."""
    counts = Counter(channels.values())
    if len(counts) < 2:
        return
    usual, usual_recordings = counts.most_common(1)[0]
    others = f"the other {usual_recordings} recordings have" if usual_recordings > 1 else "the other recording has"
    for recording, count in channels.items():
        if count != usual:
            row = wav_scp[recording]
            message = (
                f"{row.value}: {count} channel{'s' * (count != 1)} where {others} {usual}; loading mixes every "
                f"multi-channel recording down to mono (their mean) unless one channel is chosen ({channel_option()})"
            )
            check.add(check.root / "wav.scp", row.line, message, recording)


def _compare(
    name: str, check: _Checker, stated: dict[str, tuple[float, int]], actual: dict, tolerance: float, unit: str
) -> None:
    """Report stated values (durations, sample counts) that differ from the audio by more than ``tolerance``."""
    for key, (value, line) in stated.items():
        if key in actual and abs(value - actual[key]) > tolerance:
            message = f"{key!r}: {value} {unit} disagrees with the audio ({actual[key]:.6g} {unit})"
            check.add(check.root / name, line, message, key)


def _table_files(root: Path) -> list[Path]:
    """Files of a data dir that are ``<id> <value>`` tables (sorted by fix_data_dir)."""
    tables = []
    for path in sorted(root.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith("."):
            continue
        if name in CORE_TABLES or name.startswith(("utt2", "spk2", "reco2")) or name.endswith(".scp"):
            tables.append(path)
    return tables


def fix_data_dir(path: str | Path, *, allow_pipes: bool | None = None) -> list[str]:
    """Repair a data dir in place; return one line per change and per remaining problem.

    Sorts every table in Kaldi order (dropping only lines that exactly repeat another),
    regenerates spk2utt from utt2spk (or utt2spk from spk2utt when only that exists), and
    utt2dur (and utt2num_samples, when present) from the audio. Utterances missing from some
    tables are reported, never deleted. Lines that cannot be parsed raise :class:`DataError`.
    A wav.scp pipe command that is not allowed (``allow_pipes``, as in :func:`validate_data_dir`)
    raises :class:`~audiossl.data.wav_scp.PipeRefused` before anything is changed.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError("data directory not found", root)
    if not (root / "wav.scp").is_file():
        raise DataError("file not found (every data dir needs wav.scp)", root / "wav.scp")
    allow_pipes = _check_pipes(root, [(e.value, e.line) for e in read_entries(root / "wav.scp")], allow_pipes)
    changes: list[str] = []
    tables: dict[str, dict[str, str]] = {}
    for table in _table_files(root):
        tables[table.name] = _sort_table(table, changes)

    if "utt2spk" in tables:
        spk2utt = utt2spk_to_spk2utt(tables["utt2spk"])
        if tables.get("spk2utt") != spk2utt:
            write_table(root / "spk2utt", spk2utt)
            changes.append(f"{root / 'spk2utt'}: regenerated from utt2spk ({len(spk2utt)} speakers)")
    elif "spk2utt" in tables:
        utt2spk = {utt: spk for spk, utts in tables["spk2utt"].items() for utt in utts.split()}
        write_table(root / "utt2spk", utt2spk)
        changes.append(f"{root / 'utt2spk'}: generated from spk2utt ({len(utt2spk)} utterances)")

    _regenerate_durations(root, tables, allow_pipes, changes)
    left = validate_data_dir(root, check_audio=False, allow_pipes=allow_pipes)
    for problem in left:
        changes.append(f"not fixed (nothing is deleted; edit by hand): {problem}")
    if any(problem.subject is not None for problem in left):
        changes.append(f"to drop those utterances instead: audiossl data filter {root} -o NEW_DIR --drop-bad")
    return changes


def _sort_table(path: Path, changes: list[str]) -> dict[str, str]:
    """Rewrite ``path`` in Kaldi order when it is not; return its contents."""
    entries = read_entries(path, allow_empty_value=path.name == "text")
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    duplicates = 0
    for entry in entries:
        if entry.key in table:
            if table[entry.key] != entry.value:
                message = f"duplicate id {entry.key!r} with a different value (first on line {first_line[entry.key]})"
                raise DataError(message, path, entry.line)
            duplicates += 1
            continue
        table[entry.key] = entry.value
        first_line[entry.key] = entry.line
    keys = list(table)
    crlf = b"\r" in path.read_bytes()
    if duplicates or crlf or keys != sorted(keys, key=kaldi_sort_key):
        write_table(path, table)
        note = f", removed {duplicates} repeated identical line(s)" if duplicates else ""
        note += ", CRLF line endings made LF" if crlf else ""
        changes.append(f"{path}: sorted in Kaldi order ({len(table)} lines{note})")
    return dict(sorted(table.items(), key=lambda item: kaldi_sort_key(item[0])))


def _check_pipes(root: Path, entries: list[tuple[str, int]], allow_pipes: bool | None) -> bool:
    """Raise :class:`PipeRefused` naming the first pipe entry unless pipes are allowed; the resolved policy."""
    if pipes_allowed(allow_pipes):
        return True
    for value, line in entries:
        if is_pipe(value):
            raise refusal(value, allow_pipes, root / "wav.scp", line)
    return False


def _regenerate_durations(root: Path, tables: dict[str, dict[str, str]], allow_pipes: bool, changes: list) -> None:
    """Write utt2dur (and utt2num_samples if present) from the audio; report unreadable audio."""
    wav_scp = tables["wav.scp"]
    info: dict[str, tuple[int, int]] = {}
    failures = []
    lines = {entry.key: entry.line for entry in read_entries(root / "wav.scp")}
    for recording, value in progress(wav_scp.items(), desc="reading audio headers", total=len(wav_scp), unit="rec"):
        try:
            length, rate, _ = read_wav_scp_info(
                value, allow_pipes=allow_pipes, source=(root / "wav.scp", lines[recording])
            )
        except AudioError as error:
            failures.append(str(error))
            continue
        info[recording] = (length, rate)
    samples: dict[str, int] = {}
    if "segments" in tables:
        segment_lines = {entry.key: entry.line for entry in read_entries(root / "segments")}
        for utt, value in tables["segments"].items():
            fields = value.split()
            where = f"{root / 'segments'}:{segment_lines.get(utt)}: segment {utt!r}"
            if len(fields) != 3:
                failures.append(f"{where}: expected '<utt> <recording> <start> <end>'")
                continue
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                failures.append(f"{where}: start and end must be numbers (seconds)")
                continue
            if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or (end != -1 and end <= start):
                failures.append(f"{where}: bad span: start {fields[1]} s, end {fields[2]} s (end -1: to the end)")
                continue
            if fields[0] not in info:
                failures.append(f"{where}: no readable recording {fields[0]!r}")
                continue
            length, rate = info[fields[0]]
            if round(start * rate) >= length:
                failures.append(
                    f"{where}: start {fields[1]} s is past the end of {fields[0]!r} ({length / rate:.3f} s)"
                )
                continue
            last = length if end < 0 else min(round(end * rate), length)
            samples[utt] = last - round(start * rate)
        rates = {utt: info[value.split()[0]][1] for utt, value in tables["segments"].items() if utt in samples}
    else:
        samples = {recording: length for recording, (length, _) in info.items()}
        rates = {recording: rate for recording, (_, rate) in info.items()}
    if failures:
        changes.extend(f"cannot read: {failure}" for failure in failures)
        changes.append(f"{root / 'utt2dur'}: not regenerated ({len(failures)} unreadable recording(s) or segment(s))")
        return
    durations = {utt: samples[utt] / rates[utt] for utt in samples}
    _write_if_changed(root / "utt2dur", tables.get("utt2dur"), durations, "{:.4f}", 5e-5, changes)
    if "utt2num_samples" in tables:
        _write_if_changed(root / "utt2num_samples", tables["utt2num_samples"], samples, "{}", 0, changes)


def _write_if_changed(
    path: Path, old: dict[str, str] | None, new: dict[str, float], fmt: str, tolerance: float, changes: list
) -> None:
    """Write a numeric table regenerated from the audio unless the old one already agrees."""

    def differs(key: str) -> bool:
        try:
            return abs(float(old[key]) - new[key]) > tolerance
        except (KeyError, ValueError):
            return True

    differing = len(new) if old is None else sum(differs(key) for key in new)
    if old is not None and not differing and set(old) == set(new):
        return
    write_table(path, {key: fmt.format(value) for key, value in new.items()})
    changes.append(f"{path}: regenerated from the audio ({len(new)} utterances, {differing} new or changed)")
