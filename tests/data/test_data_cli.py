"""`audiossl data validate` / `audiossl data fix` through the CLI entry point: exit codes and messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from _datadir_factory import make_data_dir, table_lines, write_lines

from audiossl.cli.main import main


def test_validate_clean_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_data_dir(tmp_path, num_utts=3)
    assert main(["data", "validate", str(data)]) == 0
    assert capsys.readouterr().out.strip() == f"{data}: OK"


def test_validate_broken_exits_2_naming_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_data_dir(tmp_path, num_utts=3)
    lines = table_lines(data / "wav.scp")
    lines[1] = f"{lines[1].split()[0]} {tmp_path / 'missing.wav'}"
    write_lines(data / "wav.scp", lines)
    write_lines(data / "utt2spk", [*table_lines(data / "utt2spk"), "zz-ghost spkA"])
    assert main(["data", "validate", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"{data / 'wav.scp'}:2: {tmp_path / 'missing.wav'}: audio file not found" in err
    assert f"{data / 'utt2spk'}:4: utterance 'zz-ghost' is not in wav.scp" in err
    assert f"{data / 'spk2utt'}:1: utterances of speaker 'spkA' disagree with utt2spk" in err
    assert "3 problem(s)" in err and "Traceback" not in err


def test_validate_no_pipes_and_no_audio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_data_dir(tmp_path, num_utts=2)
    lines = table_lines(data / "wav.scp")
    key, path = lines[0].split()
    lines[0] = f"{key} cat {path} |"
    write_lines(data / "wav.scp", lines)
    assert main(["data", "validate", str(data)]) == 2  # pipes are refused by default now
    assert f"{data / 'wav.scp'}:1: pipe command" in capsys.readouterr().err
    assert main(["--allow-pipes", "data", "validate", str(data)]) == 0
    assert main(["--allow-pipes", "data", "validate", "--no-pipes", str(data)]) == 2  # --no-pipes refuses anyway
    assert f"{data / 'wav.scp'}:1: pipe command" in capsys.readouterr().err
    assert main(["data", "validate", "--no-audio", "--no-pipes", str(data)]) == 0


def test_fix_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_data_dir(tmp_path, num_utts=4)
    sorted_utt2spk = table_lines(data / "utt2spk")
    write_lines(data / "utt2spk", sorted_utt2spk[::-1])
    (data / "spk2utt").unlink()
    assert main(["data", "validate", str(data)]) == 2
    assert main(["data", "fix", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"{data / 'utt2spk'}: sorted" in out and f"{data / 'spk2utt'}: regenerated" in out
    assert table_lines(data / "utt2spk") == sorted_utt2spk
    assert main(["data", "validate", str(data)]) == 0
    assert main(["data", "fix", str(data)]) == 0
    assert "nothing to fix" in capsys.readouterr().out


def test_fix_on_a_missing_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "fix", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'nope'}: data directory not found" in err and "Traceback" not in err
