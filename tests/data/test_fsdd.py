"""FSDD preparation: the real recordings (when present) and a tiny fake folder for the errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.cli.main import main
from audiossl.data.fsdd import DIGIT_WORDS, prepare_fsdd
from audiossl.data.kaldi import DataDir, kaldi_sort_key, read_entries
from audiossl.errors import AudioError, DataError

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"
TABLES = ("wav.scp", "utt2spk", "text", "utt2digit", "utt2dur", "utt2num_samples")


def _write_fake(folder: Path, names: list[str], sample_rate: int = 8000) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, name in enumerate(names):
        sf.write(folder / name, 0.1 * rng.standard_normal(800 + 40 * index), sample_rate, subtype="PCM_16")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DataDir]:
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD} (the shared data folder beside the repository)")
    out = tmp_path_factory.mktemp("fsdd")
    prepare_fsdd(FSDD, out)
    return {split: DataDir.load(out / split) for split in ("train", "test")}


def test_real_fsdd_official_split(real):
    assert len(real["train"].wav_scp) == 2700 and len(real["test"].wav_scp) == 300
    for split, data in real.items():
        assert sorted(set(data.utt2spk.values())) == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
        for utt, path in data.wav_scp.items():
            digit, speaker, take = re.fullmatch(r"(\d)_(\w+?)_(\d+)\.wav", Path(path).name).groups()
            assert Path(path).is_absolute()
            assert data.text[utt] == DIGIT_WORDS[int(digit)] and data.labels["digit"][utt] == digit
            assert data.utt2spk[utt] == speaker and utt.startswith(speaker + "-")
            assert (int(take) < 5) == (split == "test"), (split, path)


def test_real_fsdd_tables_are_sorted_and_consistent(real):
    for data in real.values():
        assert data.path is not None
        utts = data.utterance_ids
        for table in TABLES:
            keys = [e.key for e in read_entries(data.path / table)]
            assert keys == utts, table
        spk2utt = {e.key: e.value.split() for e in read_entries(data.path / "spk2utt")}
        flattened = [u for speaker in sorted(spk2utt, key=kaldi_sort_key) for u in spk2utt[speaker]]
        assert flattened == utts  # speakers group contiguously in utterance order, as Kaldi wants


def test_real_fsdd_durations_match_the_audio(real):
    data = real["test"]
    for utt in data.utterance_ids[::37]:
        audio, sample_rate = sf.read(data.wav_scp[utt])
        assert sample_rate == 8000 and data.utt2num_samples[utt] == len(audio)
        assert abs(data.utt2dur[utt] - len(audio) / sample_rate) < 1e-4


def test_fake_folder_split_ids_and_hidden_files(tmp_path):
    names = ["7_jackson_32.wav", "7_jackson_3.wav", "0_theo_0.wav", "0_theo_12.wav", "9_theo2_5.wav"]
    _write_fake(tmp_path / "rec", names)
    (tmp_path / "rec" / ".DS_Store").write_bytes(b"\0\1")
    splits = prepare_fsdd(tmp_path / "rec", tmp_path / "out")
    assert splits["train"].utterance_ids == ["jackson-7-32", "theo-0-12", "theo2-9-05"]
    assert splits["test"].utterance_ids == ["jackson-7-03", "theo-0-00"]
    train = DataDir.load(tmp_path / "out" / "train")
    assert train.text == {"jackson-7-32": "seven", "theo-0-12": "zero", "theo2-9-05": "nine"}
    assert train.labels["digit"]["theo2-9-05"] == "9"
    assert train.utt2num_samples["theo2-9-05"] == 800 + 40 * 4
    assert train.wav_scp["theo-0-12"] == str((tmp_path / "rec" / "0_theo_12.wav").resolve())
    by_speaker = [u for spk in sorted(train.spk2utt, key=kaldi_sort_key) for u in train.spk2utt[spk].split()]
    assert by_speaker == train.utterance_ids
    words = (tmp_path / "out" / "test" / "words.txt").read_text().split()
    assert words == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_file_not_matching_the_pattern_is_named(tmp_path):
    _write_fake(tmp_path / "rec", ["1_lucas_7.wav", "1_lucas_2.wav", "lucas_one.wav"])
    with pytest.raises(DataError, match=r"lucas_one\.wav.*\{digit\}_\{speaker\}_\{take\}"):
        prepare_fsdd(tmp_path / "rec", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_missing_and_one_sided_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no FSDD recordings"):
        prepare_fsdd(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DataError, match="not found"):
        prepare_fsdd(tmp_path / "missing", tmp_path / "out")
    _write_fake(tmp_path / "only_test", ["1_lucas_0.wav", "2_lucas_4.wav"])
    with pytest.raises(DataError, match="train split"):
        prepare_fsdd(tmp_path / "only_test", tmp_path / "out")


def test_duplicate_utterance_is_an_error(tmp_path):
    _write_fake(tmp_path / "rec", ["3_lucas_7.wav", "3_lucas_07.wav", "3_lucas_1.wav"])
    with pytest.raises(DataError, match="lucas-3-07"):
        prepare_fsdd(tmp_path / "rec", tmp_path / "out")


def test_unreadable_wav_is_an_error(tmp_path):
    _write_fake(tmp_path / "rec", ["3_lucas_7.wav", "3_lucas_1.wav"])
    (tmp_path / "rec" / "4_lucas_9.wav").write_bytes(b"not a wav")
    with pytest.raises(AudioError, match=r"4_lucas_9\.wav"):
        prepare_fsdd(tmp_path / "rec", tmp_path / "out")


def test_cli_prepare_fsdd(tmp_path, capsys):
    _write_fake(tmp_path / "rec", ["5_nicolas_9.wav", "5_nicolas_1.wav", "6_nicolas_20.wav"])
    assert main(["data", "prepare-fsdd", str(tmp_path / "rec"), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "train: 2 utterances" in printed and "test: 1 utterances" in printed
    assert DataDir.load(tmp_path / "out" / "train").utterance_ids == ["nicolas-5-09", "nicolas-6-20"]
    (tmp_path / "rec" / "README.md").write_text("not audio")
    assert main(["data", "prepare-fsdd", str(tmp_path / "rec"), str(tmp_path / "out2")]) == 2
    assert "README.md" in capsys.readouterr().err
