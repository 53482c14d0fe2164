"""Trials files (VoxCeleb format) and balanced trial-list generation."""

from __future__ import annotations

from collections import Counter

import pytest
from audiossl_sv.trials import Trial, make_trials, read_trials, utt2spk_of, write_trials

from audiossl.data.kaldi import DataDir
from audiossl.errors import DataError


def _utt2spk(speakers: int, per_speaker: int) -> dict[str, str]:
    return {f"s{s}-u{u}": f"s{s}" for s in range(speakers) for u in range(per_speaker)}


def test_read_write_roundtrip(tmp_path):
    trials = [Trial(1, "a", "b"), Trial(0, "a", "c")]
    path = write_trials(tmp_path / "trials", trials)
    assert path.read_text() == "1 a b\n0 a c\n"
    back = read_trials(path, known={"a", "b", "c"})
    assert [(t.label, t.enroll, t.test, t.line) for t in back] == [(1, "a", "b", 1), (0, "a", "c", 2)]


def test_unknown_utterance_names_file_and_line(tmp_path):
    path = tmp_path / "trials"
    path.write_text("1 a b\n\n0 a zz\n")
    with pytest.raises(DataError) as error:
        read_trials(path, known={"a", "b"})
    assert error.value.path == str(path) and error.value.line == 3
    assert "'zz'" in str(error.value) and f"{path}:3" in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [("1 a\n", "3 fields|got 2 fields"), ("target a b\n", "label must be 1"), ("", "no trials")],
)
def test_malformed_trials(tmp_path, content, message):
    path = tmp_path / "trials"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_trials(path)


def test_missing_trials_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_trials(tmp_path / "nope")


@pytest.mark.parametrize(("speakers", "per_speaker", "num_trials"), [(4, 5, None), (6, 10, 40), (2, 3, None)])
def test_make_trials_balanced_and_valid(speakers, per_speaker, num_trials):
    utt2spk = _utt2spk(speakers, per_speaker)
    trials = make_trials(utt2spk, num_trials=num_trials, seed=1)
    counts = Counter(t.label for t in trials)
    assert counts[1] == counts[0] > 0
    if num_trials is not None:
        assert len(trials) == num_trials
    pairs = [frozenset((t.enroll, t.test)) for t in trials]
    assert len(set(pairs)) == len(pairs)  # no pair twice, in either order
    for t in trials:
        assert t.enroll != t.test
        assert t.label == int(utt2spk[t.enroll] == utt2spk[t.test])


def test_make_trials_uses_every_target_pair_by_default():
    utt2spk = _utt2spk(3, 4)  # 3 * C(4, 2) = 18 target pairs, 48 non-target pairs
    trials = make_trials(utt2spk)
    assert len(trials) == 36


def test_make_trials_sparse_path():
    utt2spk = _utt2spk(50, 4)  # 300 target pairs, 19600 non-target: rejection sampling
    trials = make_trials(utt2spk, num_trials=200, seed=0)
    assert Counter(t.label for t in trials) == {1: 100, 0: 100}
    assert len({frozenset((t.enroll, t.test)) for t in trials}) == 200
    assert all(t.label == int(utt2spk[t.enroll] == utt2spk[t.test]) for t in trials)


def test_make_trials_deterministic_by_seed():
    utt2spk = _utt2spk(5, 6)
    assert make_trials(utt2spk, num_trials=20, seed=3) == make_trials(utt2spk, num_trials=20, seed=3)
    assert make_trials(utt2spk, num_trials=20, seed=3) != make_trials(utt2spk, num_trials=20, seed=4)


def test_make_trials_impossible():
    with pytest.raises(DataError, match="two utterances"):
        make_trials({"a": "s1", "b": "s2"})
    with pytest.raises(DataError, match="one speaker"):
        make_trials({"a": "s1", "b": "s1"})


def test_data_dir_without_utt2spk(tmp_path):
    DataDir(wav_scp={"u1": "/x/u1.wav", "u2": "/x/u2.wav"}).save(tmp_path / "data")
    with pytest.raises(DataError, match="utt2spk") as error:
        make_trials(tmp_path / "data")
    assert error.value.path == str(tmp_path / "data" / "utt2spk")
    data = DataDir(wav_scp={"u1": "/x/u1.wav", "u2": "/x/u2.wav"}, utt2spk={"u1": "s"})
    with pytest.raises(DataError, match="no speaker"):
        utt2spk_of(data)
