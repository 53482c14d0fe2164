"""Subsets and splits of data dirs: tables filtered alike, speaker-disjoint or stratified parts, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir, Segment
from audiossl.data.subset import parse_fractions, smoke_subset, split, subset
from audiossl.errors import DataError, UserError


def corpus(speakers: int = 5, utts: int = 10) -> DataDir:
    data = DataDir(text={}, utt2dur={}, labels={"emo": {}})
    for s in range(speakers):
        for u in range(utts):
            utt = f"spk{s}-u{u:02d}"
            data.wav_scp[utt] = f"/audio/{utt}.wav"
            data.utt2spk[utt] = f"spk{s}"
            data.text[utt] = f"word{u}"
            data.utt2dur[utt] = 1.0 + u
            data.labels["emo"][utt] = ["happy", "sad"][u % 2]
    return data


def test_subset_filters_every_table_and_keeps_segment_recordings():
    data = corpus(2, 3)
    part = subset(data, ["spk0-u01", "spk1-u02"])
    for table in (part.wav_scp, part.utt2spk, part.text, part.utt2dur, part.labels["emo"]):
        assert sorted(table) == ["spk0-u01", "spk1-u02"]
    segmented = DataDir(
        wav_scp={"rec1": "/a.wav", "rec2": "/b.wav"},
        segments={"a": Segment("rec1", 0, 1), "b": Segment("rec1", 1, 2), "c": Segment("rec2", 0, 1)},
        utt2spk={"a": "x", "b": "x", "c": "y"},
    )
    assert set(subset(segmented, ["b"]).wav_scp) == {"rec1"}
    with pytest.raises(DataError, match="'nobody'"):
        subset(data, ["nobody"])


def test_split_by_speaker_is_disjoint_and_covers_everything():
    data = corpus()
    parts = split(data, {"train": 0.6, "test": 0.4}, by="speaker", seed=1)
    train_spk, test_spk = (set(parts[n].utt2spk.values()) for n in ("train", "test"))
    assert not train_spk & test_spk
    assert (len(train_spk), len(test_spk)) == (3, 2)
    assert sorted(parts["train"].utterance_ids + parts["test"].utterance_ids) == sorted(data.utterance_ids)
    again = split(data, {"train": 0.6, "test": 0.4}, by="speaker", seed=1)
    assert again["test"].utterance_ids == parts["test"].utterance_ids
    other_seeds = {tuple(split(data, {"a": 0.6, "b": 0.4}, by="speaker", seed=s)["b"].utterance_ids) for s in range(8)}
    assert len(other_seeds) > 1  # the seed matters


def test_split_by_utterance_is_stratified_per_speaker():
    parts = split(corpus(), {"train": 0.8, "test": 0.2}, by="utterance")
    assert Counter(parts["test"].utt2spk.values()) == {f"spk{s}": 2 for s in range(5)}
    assert Counter(parts["train"].utt2spk.values()) == {f"spk{s}": 8 for s in range(5)}
    assert not set(parts["train"].utterance_ids) & set(parts["test"].utterance_ids)


def test_split_refuses_empty_parts_and_bad_specs():
    with pytest.raises(DataError, match="would be empty"):
        split(corpus(2, 3), {"a": 0.5, "b": 0.3, "c": 0.2}, by="speaker")
    for bad in ("train", "train=x", "train=0.8,train=0.2", "=0.5", "a=-1"):
        with pytest.raises(UserError, match="expected name=fraction"):
            parse_fractions(bad)
    assert parse_fractions("train=0.9, dev=0.1") == {"train": 0.9, "dev": 0.1}


def test_smoke_subset_spreads_over_each_speaker_of_the_first_speakers():
    part = smoke_subset(corpus(), utts_per_speaker=2, max_speakers=3)
    assert part.utterance_ids == [f"spk{s}-u{u:02d}" for s in range(3) for u in (0, 5)]
    everything = smoke_subset(corpus(2, 3), utts_per_speaker=100)
    assert everything.utterance_ids == corpus(2, 3).utterance_ids


def test_cli_split_and_subset(tmp_path, capsys):
    corpus().save(tmp_path / "all")
    assert main(["data", "split", str(tmp_path / "all"), str(tmp_path / "parts"), "--by", "speaker"]) == 0
    assert {p.name for p in (tmp_path / "parts").iterdir()} == {"train", "test"}
    assert (tmp_path / "parts" / "test" / "utt2emo").is_file()
    assert main(["data", "subset", str(tmp_path / "all"), str(tmp_path / "smoke"), "--utts-per-speaker", "1"]) == 0
    assert len(DataDir.load(tmp_path / "smoke").utterance_ids) == 5
    capsys.readouterr()
    assert main(["data", "split", str(tmp_path / "all"), str(tmp_path / "p2"), "--parts", "train"]) == 2
    assert "expected name=fraction" in capsys.readouterr().err
