"""validate_data_dir finds every injected problem (file and line named); fix_data_dir sorts and regenerates."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _datadir_factory import make_data_dir, noise, table_lines, write_lines, write_wav

from audiossl.data.kaldi import DataDir, read_table
from audiossl.data.validate import Problem, fix_data_dir, validate_data_dir
from audiossl.data.wav_scp import PipeRefused
from audiossl.errors import DataError


def _line_of(path: Path, key: str) -> int:
    return next(n for n, line in enumerate(table_lines(path), start=1) if line.split()[0] == key)


def _find(problems: list[Problem], path: Path, line: int | None, *fragments: str) -> Problem:
    for problem in problems:
        if problem.path == str(path) and problem.line == line and all(f in problem.message for f in fragments):
            return problem
    listing = "\n".join(map(str, problems))
    raise AssertionError(f"no problem at {path}:{line} with {fragments}; found:\n{listing}")


def test_clean_dir_has_no_problems(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path)
    assert validate_data_dir(data) == []
    assert validate_data_dir(data, sample_rate=16000, allow_pipes=False) == []


def test_problem_str() -> None:
    assert str(Problem("d/utt2spk", 3, "bad")) == "d/utt2spk:3: bad"
    assert str(Problem("d/utt2spk", None, "bad")) == "d/utt2spk: bad"


def test_missing_dir_and_missing_wav_scp(tmp_path: Path) -> None:
    assert [str(p) for p in validate_data_dir(tmp_path / "nope")] == [f"{tmp_path / 'nope'}: data directory not found"]
    (tmp_path / "empty").mkdir()
    _find(validate_data_dir(tmp_path / "empty"), tmp_path / "empty" / "wav.scp", None, "not found")


def test_every_injected_problem_is_reported(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=12)
    wav_scp, ids = data / "wav.scp", [line.split()[0] for line in table_lines(data / "wav.scp")]
    scp = read_table(wav_scp)
    # Audio problems, one per utterance.
    Path(scp[ids[0]]).unlink()  # missing
    Path(scp[ids[1]]).write_bytes(b"garbage" * 50)  # corrupt
    full = Path(scp[ids[2]]).read_bytes()
    Path(scp[ids[2]]).write_bytes(full[: len(full) - 1000])  # truncated
    write_wav(Path(scp[ids[3]]), np.zeros(0, dtype=np.float32))  # zero-length
    samples = noise(0.3, 3)
    samples[10] = np.nan
    write_wav(Path(scp[ids[4]]), samples, subtype="FLOAT")  # NaN
    write_wav(Path(scp[ids[5]]), noise(0.45, 5, 8000), 8000)  # another sample rate, duration kept
    # Table problems.
    utt2spk = table_lines(data / "utt2spk")
    utt2spk[6], utt2spk[7] = utt2spk[7], utt2spk[6]  # unsorted
    utt2spk.append("zz-ghost spkA")  # id missing from wav.scp
    write_lines(data / "utt2spk", utt2spk)
    text = table_lines(data / "text")
    (data / "text").write_bytes(("\n".join(text[:8]) + "\n").encode() + b"%s caf\xe9\n" % ids[8].encode())
    emo = table_lines(data / "utt2emo")
    write_lines(data / "utt2emo", [*emo[:9], emo[9].split()[0], *emo[10:], emo[11]])  # no value, duplicate
    durations = table_lines(data / "utt2dur")
    durations[10] = f"{ids[10]} 9.5"
    del durations[11]
    write_lines(data / "utt2dur", durations)
    spk2utt = table_lines(data / "spk2utt")
    write_lines(data / "spk2utt", [spk2utt[1].rsplit(maxsplit=1)[0], spk2utt[2]])  # spkA gone, spkB short

    problems = validate_data_dir(data)
    line = {utt: _line_of(wav_scp, utt) for utt in ids}
    _find(problems, wav_scp, line[ids[0]], scp[ids[0]], "not found")
    _find(problems, wav_scp, line[ids[1]], scp[ids[1]], "cannot read audio")
    _find(problems, wav_scp, line[ids[2]], scp[ids[2]], "truncated")
    _find(problems, wav_scp, line[ids[3]], scp[ids[3]], "zero length")
    _find(problems, wav_scp, line[ids[4]], scp[ids[4]], "NaN/Inf")
    _find(problems, wav_scp, line[ids[5]], "8000 Hz", "mixed sample rates")
    _find(problems, data / "utt2spk", 8, "not sorted", "line 7")
    _find(problems, data / "utt2spk", 13, "'zz-ghost'", "not in wav.scp")
    _find(problems, data / "text", 9, "UTF-8")
    _find(problems, data / "text", None, f"no entry for utterance {ids[9]!r}", f"wav.scp line {line[ids[9]]}")
    _find(problems, data / "utt2emo", 10, "no value")
    _find(problems, data / "utt2emo", 13, "duplicate", "first on line 12")
    _find(problems, data / "utt2dur", 11, "9.5 s disagrees with the audio")
    _find(problems, data / "utt2dur", None, f"no entry for utterance {ids[11]!r}")
    _find(problems, data / "spk2utt", None, "'spkA'", "missing")
    _find(problems, data / "spk2utt", 1, "'spkB'", "disagree")
    assert all(problem.path.startswith(str(data)) for problem in problems)


def test_expected_sample_rate(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=3)
    problems = validate_data_dir(data, sample_rate=8000)
    assert len(problems) == 3 and all("expected 8000 Hz" in p.message for p in problems)


def test_segments_problems(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_wav(tmp_path / "rec.wav", noise(1.0, 0))
    write_lines(data / "wav.scp", [f"rec {tmp_path / 'rec.wav'}"])
    write_lines(
        data / "segments",
        ["u1 rec 0.00 0.50", "u2 rec 0.50 -1", "u3 rec 0.20 2.00", "u4 other 0.0 0.1", "u5 rec 0.7 0.3", "u6 rec x 1"],
    )
    write_lines(data / "utt2spk", ["u1 s", "u2 s", "u3 s", "u4 s", "u5 s", "u6 s", "u7 s"])
    write_lines(data / "utt2dur", ["u1 0.5", "u2 0.4"])
    problems = validate_data_dir(data)
    _find(problems, data / "segments", 3, "end 2.0 s is past the end of 'rec'")
    _find(problems, data / "segments", 4, "recording 'other'", "not in wav.scp")
    _find(problems, data / "segments", 5, "bad span")
    _find(problems, data / "segments", 6, "numbers")
    _find(problems, data / "utt2spk", 7, "'u7'", "not in segments")
    _find(problems, data / "utt2dur", 2, "0.4 s disagrees", "0.5 s")
    assert not [p for p in problems if p.path == str(data / "utt2dur") and p.line == 1]


def test_refused_pipes_and_failing_pipes(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=2)
    lines = table_lines(data / "wav.scp")
    first, path = lines[0].split()
    lines[0] = f"{first} cat {path} |"
    lines[1] = f"{lines[1].split()[0]} echo boom >&2; exit 1 |"
    write_lines(data / "wav.scp", lines)
    for allow_pipes in (False, None):  # pipes are refused by default: the first one, before any audio is read
        with pytest.raises(PipeRefused, match="refused") as refused:
            validate_data_dir(data, allow_pipes=allow_pipes)
        assert (refused.value.path, refused.value.line) == (str(data / "wav.scp"), 1)
    problems = validate_data_dir(data, allow_pipes=True)
    assert len(problems) == 1
    _find(problems, data / "wav.scp", 2, "status 1", "boom")


def test_table_checks_without_audio(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=3)
    shutil.rmtree(tmp_path / "wav")
    assert validate_data_dir(data, check_audio=False) == []
    assert len(validate_data_dir(data)) == 3


# --- fix ------------------------------------------------------------------------------------


def test_fix_sorts_and_regenerates(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=6)
    expected = {name: (data / name).read_text() for name in ("wav.scp", "utt2spk", "text", "utt2emo", "utt2dur")}
    expected["spk2utt"] = (data / "spk2utt").read_text()
    for name in ("wav.scp", "utt2spk", "text", "utt2emo"):
        write_lines(data / name, table_lines(data / name)[::-1])
    write_lines(data / "utt2emo", [*table_lines(data / "utt2emo"), table_lines(data / "utt2emo")[0]])  # same line twice
    (data / "spk2utt").unlink()
    write_lines(data / "utt2dur", [f"{line.split()[0]} 1.0" for line in table_lines(data / "utt2dur")])
    assert validate_data_dir(data) != []

    changes = fix_data_dir(data)
    assert any("wav.scp: sorted" in c for c in changes) and any("spk2utt: regenerated" in c for c in changes)
    assert any("utt2emo: sorted" in c and "1 repeated identical line" in c for c in changes)
    assert any("utt2dur: regenerated from the audio (6 utterances, 6 new or changed)" in c for c in changes)
    assert not any(c.startswith("not fixed") for c in changes)
    for name, content in expected.items():
        assert (data / name).read_text() == content, name
    assert validate_data_dir(data) == []
    assert fix_data_dir(data) == []  # nothing left to do
    assert not [p for p in data.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_fix_reports_instead_of_deleting(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=4)
    text = table_lines(data / "text")
    write_lines(data / "text", text[1:])
    changes = fix_data_dir(data)
    missing = text[0].split()[0]
    assert any(c.startswith("not fixed") and f"no entry for utterance {missing!r}" in c for c in changes)
    assert len(DataDir.load(data).utterance_ids) == 4 and table_lines(data / "text") == text[1:]


def test_fix_keeps_utt2dur_when_audio_is_unreadable(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=3)
    before = (data / "utt2dur").read_text()
    Path(read_table(data / "wav.scp")[table_lines(data / "wav.scp")[1].split()[0]]).unlink()
    changes = fix_data_dir(data)
    assert any("not found" in c and f"{data / 'wav.scp'}:2" in c for c in changes)
    assert any("utt2dur: not regenerated" in c for c in changes)
    assert (data / "utt2dur").read_text() == before


def test_fix_generates_utt2spk_from_spk2utt_and_durations_of_segments(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_wav(tmp_path / "rec.wav", noise(1.0, 0))
    write_lines(data / "wav.scp", [f"rec {tmp_path / 'rec.wav'}"])
    write_lines(data / "segments", ["u2 rec 0.25 -1", "u1 rec 0.00 0.25"])
    write_lines(data / "spk2utt", ["s u1 u2"])
    fix_data_dir(data)
    assert read_table(data / "utt2spk") == {"u1": "s", "u2": "s"}
    assert read_table(data / "utt2dur") == {"u1": "0.2500", "u2": "0.7500"}
    assert table_lines(data / "segments") == ["u1 rec 0.00 0.25", "u2 rec 0.25 -1"]
    assert validate_data_dir(data) == []


def test_fix_refuses_conflicting_duplicates(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=2)
    lines = table_lines(data / "utt2spk")
    write_lines(data / "utt2spk", [*lines, f"{lines[0].split()[0]} other"])
    with pytest.raises(DataError, match="different value") as error:
        fix_data_dir(data)
    assert error.value.path == str(data / "utt2spk") and error.value.line == 3
