"""audiossl.data.kaldi: table reading errors (with line numbers), C sort order, DataDir round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.data.kaldi import DataDir, Segment, read_entries, read_table, write_table
from audiossl.errors import DataError


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "utt2spk"
    path.write_text("a s1\nb s2\na s3\n")
    with pytest.raises(DataError) as error:
        read_table(path)
    assert str(error.value).startswith(f"{path}:3: ") and "first on line 1" in str(error.value)


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_bytes(b"a hello\nb caf\xe9\nc bye\n")
    with pytest.raises(DataError, match="UTF-8") as error:
        read_table(path, allow_empty_value=True)
    assert error.value.path == str(path) and error.value.line == 2


def test_missing_value_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "utt2emo"
    path.write_text("a happy\nb\n")
    with pytest.raises(DataError, match="no value") as error:
        read_table(path)
    assert error.value.line == 2
    assert read_table(path, allow_empty_value=True) == {"a": "happy", "b": ""}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as error:
        read_table(tmp_path / "wav.scp")
    assert error.value.path == str(tmp_path / "wav.scp")


def test_tabs_and_extra_spaces(tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_text("a\thello  world \nb  x\n")
    assert read_table(path) == {"a": "hello  world", "b": "x"}
    assert [entry.line for entry in read_entries(path)] == [1, 2]


def test_write_table_uses_byte_order_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    keys = ["b", "a_1", "a-1", "B", "a", "\u00e9"]
    write_table(tmp_path / "utt2x", {k: "v" for k in keys})
    written = [line.split()[0] for line in (tmp_path / "utt2x").read_text().splitlines()]
    assert written == sorted(keys, key=lambda k: k.encode("utf-8"))  # what LC_ALL=C sort gives
    assert written[:4] == ["B", "a", "a-1", "a_1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["utt2x"]


def test_write_table_rejects_whitespace_in_ids(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="whitespace"):
        write_table(tmp_path / "t", {"a b": "x"})


def test_data_dir_round_trip(tmp_path: Path) -> None:
    data = DataDir(
        wav_scp={"r1": "/audio/r1.wav", "r2": "sox /audio/r2.sph -t wav - |"},
        segments={"u1": Segment("r1", 0.0, 1.25), "u2": Segment("r1", 1.25, -1), "u3": Segment("r2", 0.5, 2.0)},
        utt2spk={"u1": "s1", "u2": "s1", "u3": "s2"},
        text={"u1": "hello world", "u2": "", "u3": "bye"},
        utt2dur={"u1": 1.25, "u2": 0.75, "u3": 1.5},
        utt2num_samples={"u1": 20000, "u2": 12000, "u3": 24000},
        labels={"emo": {"u1": "happy", "u2": "sad", "u3": "happy"}, "lang": {"u1": "en", "u2": "fr", "u3": "en"}},
    )
    data.save(tmp_path / "d")
    assert (tmp_path / "d" / "spk2utt").read_text() == "s1 u1 u2\ns2 u3\n"
    loaded = DataDir.load(tmp_path / "d")
    assert loaded.wav_scp == data.wav_scp
    assert loaded.segments == data.segments
    assert loaded.utt2spk == data.utt2spk
    assert loaded.text == data.text
    assert loaded.utt2dur == data.utt2dur
    assert loaded.utt2num_samples == data.utt2num_samples
    assert loaded.labels == data.labels
    assert loaded.utterance_ids == ["u1", "u2", "u3"]
    assert loaded.spk2utt == {"s1": "u1 u2", "s2": "u3"}


def test_data_dir_without_segments_uses_recordings_as_utterances(tmp_path: Path) -> None:
    DataDir(wav_scp={"b": "/x/b.wav", "a": "/x/a.wav"}).save(tmp_path)
    loaded = DataDir.load(tmp_path)
    assert loaded.segments is None and loaded.text is None and loaded.labels == {}
    assert loaded.utterance_ids == ["a", "b"]


def test_bad_segments_line(tmp_path: Path) -> None:
    (tmp_path / "wav.scp").write_text("r1 /x.wav\n")
    (tmp_path / "segments").write_text("u1 r1 0.0 1.0\nu2 r1 zero 1.0\n")
    with pytest.raises(DataError, match="numbers") as error:
        DataDir.load(tmp_path)
    assert error.value.path == str(tmp_path / "segments") and error.value.line == 2


def test_label_tables_are_plain_utt2_names_only(tmp_path):
    from audiossl.data.kaldi import DataDir

    data = DataDir(wav_scp={"u1": "/a.wav"}, utt2spk={"u1": "s"}, labels={"emo": {"u1": "happy"}})
    data.save(tmp_path)
    (tmp_path / "utt2.wav").write_bytes(b"RIFF\xff\xfe not a table")
    (tmp_path / "utt2emo.bak").write_bytes(b"\xff\xfe")
    (tmp_path / "utt2lang").mkdir()
    loaded = DataDir.load(tmp_path)
    assert loaded.labels == {"emo": {"u1": "happy"}}
