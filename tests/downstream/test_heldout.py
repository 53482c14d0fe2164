"""The held-out split: deterministic, disjoint, stratified or speaker-disjoint, and recorded in the run dir."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from audiossl.data.kaldi import DataDir
from audiossl.downstream.heldout import heldout_split, read_heldout, write_heldout
from audiossl.errors import ConfigError, DataError


def fake_data(count: int = 60, speakers: int = 4, shuffle_seed: int | None = None) -> DataDir:
    ids = [f"s{i % speakers}-u{i:03d}" for i in range(count)]
    if shuffle_seed is not None:  # the same table in another order on disk
        random.Random(shuffle_seed).shuffle(ids)
    labels = {utt: ["yes", "no", "up"][int(utt[-3:]) % 3] if int(utt[-3:]) < 50 else "rare" for utt in ids}
    return DataDir(
        wav_scp={utt: f"/x/{utt}.wav" for utt in ids},
        utt2spk={utt: utt.split("-")[0] for utt in ids},
        labels={"kw": labels},
    )


def test_deterministic_disjoint_and_independent_of_table_order():
    first = heldout_split(fake_data(), fraction=0.2, min_utterances=5, stratify="kw", seed=3)
    again = heldout_split(fake_data(shuffle_seed=1), fraction=0.2, min_utterances=5, stratify="kw", seed=3)
    assert first == again
    assert set(first.train).isdisjoint(first.dev)
    assert sorted(first.train + first.dev) == sorted(fake_data().utterance_ids)
    assert len(first.dev) == 12
    other = heldout_split(fake_data(), fraction=0.2, min_utterances=5, stratify="kw", seed=4)
    assert other.dev != first.dev  # the seed matters


def test_stratified_by_label_keeps_each_class_share():
    data = fake_data()
    split = heldout_split(data, fraction=0.2, min_utterances=5, stratify="kw")
    table = data.labels["kw"]
    total, held = Counter(table.values()), Counter(table[u] for u in split.dev)
    for name, count in total.items():
        assert 1 <= held[name] < count  # every class in both parts
        assert abs(held[name] - 0.2 * count) <= 1


def test_speaker_disjoint_split():
    data = fake_data(count=60, speakers=6)
    split = heldout_split(data, fraction=0.15, min_utterances=5, by="speaker")
    dev_speakers = {data.utt2spk[u] for u in split.dev}
    assert dev_speakers.isdisjoint(data.utt2spk[u] for u in split.train)
    assert len(split.dev) >= 9 and len(dev_speakers) == 1  # one speaker of 10 utterances reaches 15% of 60


def test_too_small_and_bad_settings_are_named():
    with pytest.raises(DataError, match="too few"):
        heldout_split(fake_data(count=15), min_utterances=10)
    with pytest.raises(ConfigError, match="fraction"):
        heldout_split(fake_data(), fraction=0.7)
    with pytest.raises(DataError, match="two speakers"):
        heldout_split(fake_data(count=40, speakers=1), min_utterances=5, by="speaker")


def test_split_is_recorded_and_a_different_one_refused(corpus24, tmp_path):
    data = DataDir.load(corpus24)
    split = heldout_split(data, fraction=0.2, min_utterances=5, stratify="emo")
    train_dir, dev_dir = write_heldout(data, split, tmp_path / "run")
    assert DataDir.load(dev_dir).utterance_ids == split.dev
    assert DataDir.load(train_dir).utterance_ids == split.train
    assert set(DataDir.load(dev_dir).labels["emo"]) == set(split.dev)
    record = read_heldout(tmp_path / "run")
    assert record["dev"] == split.dev and record["counts"] == {"train": len(split.train), "dev": len(split.dev)}
    assert json.loads((tmp_path / "run" / "heldout.json").read_text())["stratify"] == "emo"
    write_heldout(data, split, tmp_path / "run")  # the same split again (a resumed run) is fine
    other = heldout_split(data, fraction=0.2, min_utterances=5, stratify="emo", seed=9)
    with pytest.raises(ConfigError, match="another held-out split"):
        write_heldout(data, other, tmp_path / "run")
