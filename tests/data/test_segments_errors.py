"""A bad ``segments`` line is blamed on ``segments:LINE`` and its segment id by every reader (issue 13).

End before start is refused when the data dir is read; a span past the end of its recording
is found when the audio is read, and re-anchored on the segments line (not on wav.scp).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _datadir_factory import noise, write_lines, write_wav

from audiossl.cli.main import main
from audiossl.data.dataset import AudioDataset
from audiossl.data.kaldi import DataDir, Segment
from audiossl.data.validate import validate_data_dir
from audiossl.data.wav_scp import load_utterance
from audiossl.errors import AudioError, DataError
from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES


def _segmented(root: Path, segments: list[str]) -> Path:
    """rec1 and rec2 (1 s each at 16 kHz) cut by ``segments`` lines."""
    data = root / "data"
    data.mkdir(parents=True)
    wavs = {name: write_wav(root / "wav" / f"{name}.wav", noise(1.0, seed)) for seed, name in enumerate(["r1", "r2"])}
    write_lines(data / "wav.scp", [f"rec1 {wavs['r1']}", f"rec2 {wavs['r2']}"])
    write_lines(data / "segments", segments)
    ids = [line.split()[0] for line in segments]
    write_lines(data / "utt2spk", [f"{utt} spk" for utt in ids])
    write_lines(data / "spk2utt", ["spk " + " ".join(ids)])
    return data


PAST_END = ["u1 rec1 0.0 0.6", "u2 rec1 0.4 1.0", "u3 rec2 0.2 3.0"]  # u3 (line 3) ends 2 s after rec2
BACKWARDS = ["u1 rec1 0.0 0.6", "u2 rec1 0.9 0.4", "u3 rec2 0.2 0.8"]  # u2 (line 2) ends before it starts


def test_end_before_start_is_refused_when_read(tmp_path: Path) -> None:
    data = _segmented(tmp_path, BACKWARDS)
    with pytest.raises(DataError) as error:
        DataDir.load(data)
    message = str(error.value)
    assert message.startswith(f"{data / 'segments'}:2: segment 'u2': bad span: start 0.9 s, end 0.4 s")
    # validate names the same line and id
    problems = [str(p) for p in validate_data_dir(data)]
    assert any(p.startswith(f"{data / 'segments'}:2: segment 'u2': bad span") for p in problems), problems


@pytest.mark.parametrize("line", ["u1 rec1 -0.5 0.2", "u1 rec1 nan 0.2", "u1 rec1 0.3 inf", "u1 rec1 0.3 0.3"])
def test_other_impossible_spans(tmp_path: Path, line: str) -> None:
    data = _segmented(tmp_path, [line])
    with pytest.raises(DataError, match=r"segments:1: segment 'u1': bad span"):
        DataDir.load(data)


def test_past_the_end_names_the_segments_line_the_id_and_the_audio(tmp_path: Path) -> None:
    data = _segmented(tmp_path, PAST_END)
    loaded = DataDir.load(data)
    assert loaded.segments["u3"] == Segment("rec2", 0.2, 3.0) and loaded.segments["u3"].line == 3
    with pytest.raises(AudioError) as error:
        load_utterance(loaded, "u3")
    message = str(error.value)
    assert message.startswith(f"{data / 'segments'}:3: segment 'u3' "), message
    assert "past the end of the recording (1.000 s)" in message
    assert f"{tmp_path / 'wav' / 'r2.wav'}, {data / 'wav.scp'}:2" in message  # where the recording is
    # a DataDir made in code (no line stored) finds the line in the file
    made = DataDir(wav_scp=loaded.wav_scp, segments={"u3": Segment("rec2", 0.2, 3.0)}, path=data)
    with pytest.raises(AudioError, match=r"segments:3: segment 'u3' "):
        load_utterance(made, "u3")
    with pytest.raises(AudioError, match=r"segments:3: segment 'u3' "):
        AudioDataset(data)[2]


def test_start_past_the_end(tmp_path: Path) -> None:
    data = _segmented(tmp_path, ["u1 rec1 0.0 0.5", "u2 rec2 4.0 -1"])
    with pytest.raises(AudioError) as error:
        load_utterance(DataDir.load(data), "u2")
    assert str(error.value).startswith(f"{data / 'segments'}:2: segment 'u2' (4 s to the end of recording 'rec2')")
    assert "at or past the end of the recording" in str(error.value)


def test_a_missing_file_is_still_blamed_on_wav_scp(tmp_path: Path) -> None:
    data = _segmented(tmp_path, PAST_END)
    (tmp_path / "wav" / "r1.wav").unlink()
    with pytest.raises(AudioError) as error:
        load_utterance(DataDir.load(data), "u1")
    assert str(error.value).startswith(f"{data / 'wav.scp'}:1: {tmp_path / 'wav' / 'r1.wav'}: audio file not found")


def test_segment_of_a_recording_missing_from_wav_scp(tmp_path: Path) -> None:
    data = _segmented(tmp_path, ["u1 rec1 0.0 0.5", "u2 rec9 0.0 0.5"])
    with pytest.raises(DataError) as error:
        load_utterance(DataDir.load(data), "u2")
    assert str(error.value).startswith(f"{data / 'segments'}:2: segment 'u2': its recording 'rec9' is not in")


def _pretrain(data: Path, out: Path, capsys: pytest.CaptureFixture, *sets: str) -> str:
    overrides = [*TINY_PRETRAIN_OVERRIDES, "run.max_steps=1", "data.max_seconds_per_batch=20", *sets]
    argv = ["pretrain", "-c", "mspm-ast-tiny", "--data", str(data), "--out", str(out)]
    status = main([*argv, *[item for override in overrides for item in ("--set", override)]])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("segments", "expected"),
    [(PAST_END, "segments:3: segment 'u3' "), (BACKWARDS, "segments:2: segment 'u2': bad span")],
    ids=["past-the-end", "end-before-start"],
)
def test_pretrain_names_the_segments_line(tmp_path: Path, capsys, segments: list[str], expected: str) -> None:
    data = _segmented(tmp_path, segments)
    err = _pretrain(data, tmp_path / "run", capsys)
    assert f"error: {data / 'segments'}:" in err and expected in err
    assert f"{data / 'wav.scp'}:2: " not in err.split(expected)[0]  # not blamed on wav.scp


def test_pretrain_with_dataloader_workers_names_the_segments_line(tmp_path: Path, capsys) -> None:
    """The error crosses a DataLoader worker process and still reads as the user error it is."""
    data = _segmented(tmp_path, PAST_END)
    err = _pretrain(data, tmp_path / "run", capsys, "data.num_workers=1")
    assert f"error: {data / 'segments'}:3: segment 'u3' " in err
