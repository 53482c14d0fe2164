"""Label stores, write side: dtype by k, round trips, merges equal to one write, pseudo-speaker stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiossl.cluster.speakers import write_pseudo_labels
from audiossl.data.labelstore import (
    LabelStore,
    LabelStoreWriter,
    label_dtype,
    merge_label_stores,
    write_label_store,
)
from audiossl.data.targets import pseudo_label_store, read_pseudo_labels, table_rows
from audiossl.errors import ConfigError, DataError

FILES = ("labels.npy", "offsets.npy", "ids", "id_offsets.npy", "info.json", "frame_rate")


@pytest.mark.parametrize(("k", "dtype"), [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16)])
def test_the_dtype_follows_k(tmp_path, k, dtype):
    assert label_dtype(k) == dtype
    write_label_store(tmp_path / "lab", {"a": [0, k - 1]}, k, 50.0)
    store = LabelStore(tmp_path / "lab")
    assert store.dtype == dtype and np.load(tmp_path / "lab" / "labels.npy").dtype == dtype
    assert store["a"].tolist() == [0, k - 1]


def test_more_than_65536_clusters_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"65537 clusters do not fit .*at most 65536"):
        LabelStoreWriter(tmp_path / "lab", 65537, 50.0)
    assert label_dtype(70000, per_utterance=True) == np.uint32  # pseudo-speakers may be more
    with pytest.raises(ConfigError, match="at least 1 cluster"):
        label_dtype(0)


def test_bad_labels_and_ids_are_refused_and_leave_no_store(tmp_path):
    with pytest.raises(DataError, match=r"utterance 'b' fall outside 0..9: 0..10"):
        with LabelStoreWriter(tmp_path / "lab", 10, 50.0) as writer:
            writer.add("a", [1, 2])
            writer.add("b", [0, 10])
    with pytest.raises(DataError, match="'a' was given labels twice"):
        with LabelStoreWriter(tmp_path / "lab", 10, 50.0) as writer:
            writer.add("a", [1])
            writer.add("a", [2])
    with pytest.raises(DataError, match="whitespace"):
        with LabelStoreWriter(tmp_path / "lab", 10, 50.0) as writer:
            writer.add("a b", [1])
    with pytest.raises(DataError, match="must be integers"):
        LabelStoreWriter(tmp_path / "lab", 10, 50.0).add("a", np.array([0.5]))  # dropped unclosed: cleaned up too
    assert list((tmp_path / "lab").iterdir()) == []  # no store, no temporary files


ids_strategy = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=8
).filter(lambda s: not any(ch.isspace() for ch in s))


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(ids_strategy, st.lists(st.integers(0, 299), max_size=12), max_size=30),
    st.randoms(use_true_random=False),
)
def test_any_labels_read_back_as_written(tmp_path_factory, labels, random):
    out = tmp_path_factory.mktemp("rt") / "lab"
    items = list(labels.items())
    random.shuffle(items)  # arrival order does not matter
    with LabelStoreWriter(out, 300, 100.0) as writer:
        for utt, values in items:
            writer.add(utt, np.asarray(values, dtype=np.int64))
    store = LabelStore(out)
    assert list(store) == sorted(labels, key=lambda u: u.encode("utf-8"))
    assert {utt: store[utt].tolist() for utt in labels} == labels
    assert len(store) == len(labels) and "\n" not in store
    store.verify()


def random_labels(seed: int, count: int, k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"spk{i % 7}-utt{i:05d}": rng.integers(0, k, rng.integers(0, 60)) for i in rng.permutation(count)}


@pytest.mark.parametrize(("k", "shards"), [(100, 3), (1000, 4)])
def test_a_merge_of_shards_equals_one_write_byte_for_byte(tmp_path, k, shards):
    labels = random_labels(k, 700, k)
    info = {"kmeans": "/km", "features": "mfcc"}
    write_label_store(tmp_path / "one", labels, k, 50.0, info=info)
    keys = list(labels)
    rng = np.random.default_rng(1)
    assignment = rng.integers(0, shards, len(keys))  # interleaved, not contiguous blocks
    parts = []
    for shard in range(shards):
        part = tmp_path / f"part{shard}"
        with LabelStoreWriter(part, k, 50.0, info=info) as writer:  # one utterance at a time in the shard
            for index in np.flatnonzero(assignment == shard):
                writer.add(keys[index], labels[keys[index]])
        parts.append(part)
    merge_label_stores(parts[::-1], tmp_path / "merged")  # shard order does not matter either
    for name in FILES:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "merged" / name).read_bytes(), name
    vectorised = tmp_path / "vectorised"
    with LabelStoreWriter(vectorised, k, 50.0, info=info) as writer:
        writer.add_many(keys, np.concatenate(list(labels.values())), [len(v) for v in labels.values()])
    for name in FILES:
        assert (tmp_path / "one" / name).read_bytes() == (vectorised / name).read_bytes(), name


def test_merges_refuse_overlapping_or_mismatched_shards(tmp_path):
    write_label_store(tmp_path / "a", {"x": [1], "y": [2]}, 10, 50.0)
    write_label_store(tmp_path / "b", {"y": [3]}, 10, 50.0)
    write_label_store(tmp_path / "c", {"z": [3]}, 20, 50.0)
    with pytest.raises(DataError, match=r"'y' is in two shards"):
        merge_label_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    with pytest.raises(DataError, match=r"n_clusters 20 differs from 10"):
        merge_label_stores([tmp_path / "a", tmp_path / "c"], tmp_path / "out")
    assert not (tmp_path / "out" / "info.json").exists()


def test_pseudo_speaker_labels_have_a_store_that_gives_the_table_rows(tmp_path):
    rng = np.random.default_rng(2)
    ids = [f"u{i:04d}" for i in rng.permutation(300)]
    labels = torch.from_numpy(rng.integers(0, 40, 300))
    write_pseudo_labels(tmp_path / "utt2pseudo", ids, labels)
    table = read_pseudo_labels(tmp_path / "utt2pseudo")  # the Kaldi table, as before
    assert table == dict(zip(ids, labels.tolist(), strict=True))
    store = pseudo_label_store(tmp_path / "utt2pseudo")
    assert store is not None and store.per_utterance and store.dtype == np.uint8
    assert read_pseudo_labels(tmp_path / "utt2pseudo.store") == table
    # The rows equal those of the table path (rank among the sorted ids), -1 when absent off training.
    from_store = table_rows(tmp_path / "utt2pseudo", "pseudo-label", torch.tensor(-1))
    expected = {utt: row for row, utt in enumerate(sorted(table))}
    assert all(int(from_store(utt, 0.0, 1, True)) == expected[utt] for utt in ids)
    assert int(from_store("unknown", 0.0, 1, True)) == -1
    with pytest.raises(DataError, match="'unknown' has no pseudo-label"):
        table_rows(tmp_path / "utt2pseudo", "pseudo-label")("unknown", 0.0, 1, True)
    # An edited table (same size) no longer matches its store: the table is read.
    text = (tmp_path / "utt2pseudo").read_text()
    first_value = text.split("\n")[0].split()[1]
    other = first_value[:-1] + ("1" if first_value[-1] != "1" else "2")  # same length, another speaker
    edited = text.replace(f" {first_value}\n", f" {other}\n", 1)
    assert len(edited) == len(text) and edited != text
    (tmp_path / "utt2pseudo").write_text(edited)
    assert pseudo_label_store(tmp_path / "utt2pseudo") is None
