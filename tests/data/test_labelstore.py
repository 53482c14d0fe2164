"""Label stores, read side: bounded memory at a million utterances, exact reads, old dirs, corruption."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from audiossl.cluster.labels import write_labels
from audiossl.data.labelstore import LabelStore, LabelStoreWriter, write_label_store
from audiossl.data.targets import FrameTargets, TokenClock, read_labels
from audiossl.errors import DataError

MILLION = 1_000_000
SAMPLED = 2000

# Opens the store given as argv[1] and reads the ids listed in argv[2]; reports its resident memory
# (/proc/self/statm: anonymous and file-backed pages) and its anonymous part (RssAnon of
# /proc/self/status) before opening, after opening, after all the reads, and after copying the
# labels whole (the control: the measurement must see memory really taken).
PROBE = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from audiossl.data.labelstore import LabelStore

    def resident():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def anonymous():
        with open("/proc/self/status") as handle:
            line = next(line for line in handle if line.startswith("RssAnon:"))
        return int(line.split()[1]) * 1024

    ids = open(sys.argv[2]).read().split()
    before = (resident(), anonymous())
    store = LabelStore(sys.argv[1])
    opened = resident()
    values = [store.array(utt).copy() for utt in ids]
    after = (resident(), anonymous())
    whole = np.array(store.labels)
    control = resident()
    np.savez(sys.argv[3], flat=np.concatenate(values), lengths=np.array([len(v) for v in values]))
    print(json.dumps({
        "open": opened - before[0],
        "open_and_reads": after[0] - before[0],
        "anonymous_open_and_reads": after[1] - before[1],
        "control": control - after[0],
        "bytes": whole.nbytes,
    }))
    """
)


@pytest.fixture(scope="module")
def million(tmp_path_factory):
    """A store of 1M synthetic utterances (about 20M uint16 labels) written in shuffled order, with the originals."""
    rng = np.random.default_rng(0)
    ids = np.char.add("utt", np.char.zfill(np.arange(MILLION).astype("U7"), 7))  # (N,) sorted
    order = rng.permutation(MILLION)  # the order the writer receives them in
    lengths = rng.integers(0, 40, MILLION)  # (N,) in arrival order
    flat = rng.integers(0, 500, int(lengths.sum())).astype(np.uint16)  # (T,) in arrival order
    out = tmp_path_factory.mktemp("million") / "labels"
    with LabelStoreWriter(out, 500, 50.0) as writer:
        half = MILLION // 2
        cut = int(lengths[:half].sum())
        writer.add_many(ids[order[:half]], flat[:cut], lengths[:half])
        writer.add_many(ids[order[half:]], flat[cut:], lengths[half:])
    starts = np.cumsum(lengths) - lengths
    return out, ids, order, lengths, starts, flat


def test_a_million_utterances_open_in_bounded_memory_and_read_back_exactly(million, tmp_path):
    out, ids, order, lengths, starts, flat = million
    rng = np.random.default_rng(1)
    arrival = rng.integers(0, MILLION, SAMPLED)  # positions in the arrival order
    wanted = ids[order[arrival]]
    (tmp_path / "ids").write_text("\n".join(wanted.tolist()))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), str(tmp_path / "ids"), str(tmp_path / "read.npz")],
        capture_output=True,
        text=True,
        check=True,
    )
    memory = json.loads(result.stdout)
    assert memory["open"] < 50 * 2**20 and memory["open_and_reads"] < 50 * 2**20, memory
    assert memory["anonymous_open_and_reads"] < 50 * 2**20, memory
    assert memory["control"] > 0.8 * memory["bytes"], memory  # the measurement sees memory really taken
    read = np.load(tmp_path / "read.npz")
    assert read["lengths"].tolist() == lengths[arrival].tolist()
    expected = np.concatenate([flat[starts[a] : starts[a] + lengths[a]] for a in arrival])
    assert np.array_equal(read["flat"], expected)


def test_a_million_utterances_keep_id_order_and_counts(million):
    out, ids, order, lengths, starts, flat = million
    store = LabelStore(out)
    assert len(store) == MILLION and store.dtype == np.uint16
    assert store.info["frames"] == len(flat) and store.info["max_label"] == int(flat.max())
    rng = np.random.default_rng(2)
    for row in rng.integers(0, MILLION, 200).tolist():  # row r holds the r-th smallest id
        assert store.id_at(row) == ids[row]
        assert store.row(ids[row]) == row
    assert store.row("utt9999999") is None and "nope" not in store


def test_old_text_and_new_store_dirs_read_identically(tmp_path):
    rng = np.random.default_rng(3)
    labels = {f"spk{i % 3}-u{i}": torch.from_numpy(rng.integers(0, 7, rng.integers(0, 30))) for i in range(40)}
    write_labels(tmp_path / "old", labels, 100.0, store=False, info={"n_clusters": 7})
    write_labels(tmp_path / "new", labels, 100.0, info={"n_clusters": 7})
    assert (tmp_path / "old" / "labels").is_file() and not (tmp_path / "old" / "labels.npy").exists()
    old, old_rate = read_labels(tmp_path / "old")
    new, new_rate = read_labels(tmp_path / "new")
    assert isinstance(old, dict) and isinstance(new, LabelStore) and new.dtype == np.uint8
    assert old_rate == new_rate == 100.0
    assert list(new) == sorted(labels) and set(old) == set(labels)
    for utt, values in labels.items():
        assert torch.equal(old[utt], values) and torch.equal(new[utt], values)
        assert new[utt].dtype == old[utt].dtype == torch.int64
    # The targets of a batch are the same whichever dir they come from (whole and cropped, at another rate).
    clock = TokenClock(50.0, torch.arange(1, 400) * 320, 400 * 320)
    from_old = FrameTargets([tmp_path / "old"], 7, clock)
    from_new = FrameTargets([tmp_path / "new"], 7, clock)
    for utt, values in labels.items():
        samples = len(values) * 160
        if clock.count(samples) and len(values) > 1:
            assert torch.equal(from_old(utt, 0.0, samples, True), from_new(utt, 0.0, samples, True))
            crop = (len(values) // 2) * 160
            assert torch.equal(from_old(utt, 0.02, crop, False), from_new(utt, 0.02, crop, False))


def test_frame_targets_check_the_store_against_the_classes(tmp_path):
    write_label_store(tmp_path / "lab", {"a": [0, 5, 9]}, 10, 100.0)
    clock = TokenClock(100.0, torch.arange(1, 10) * 160, 10 * 160)
    with pytest.raises(DataError, match=r"labels reach 9, outside 0..7"):
        FrameTargets([tmp_path / "lab"], 8, clock)
    targets = FrameTargets([tmp_path / "lab"], 10, clock)
    assert targets(targets_utt := "a", 0.0, 3 * 160, True).tolist() == [0, 5, 9]
    with pytest.raises(DataError, match="no labels for utterance 'b'"):
        targets("b", 0.0, 160, True)
    assert pickle.loads(pickle.dumps(targets))(targets_utt, 0.0, 3 * 160, True).tolist() == [0, 5, 9]


def test_later_label_dirs_win_as_with_dicts(tmp_path):
    write_label_store(tmp_path / "a", {"x": [1, 1], "y": [2, 2]}, 4, 100.0)
    write_labels(tmp_path / "b", {"y": torch.tensor([3, 3])}, 100.0, store=False)
    clock = TokenClock(100.0, torch.arange(1, 10) * 160, 10 * 160)
    targets = FrameTargets([tmp_path / "a", tmp_path / "b"], 4, clock)
    assert targets("x", 0.0, 320, True).tolist() == [1, 1] and targets("y", 0.0, 320, True).tolist() == [3, 3]


def test_a_store_pickles_by_path(tmp_path):
    write_label_store(tmp_path / "lab", {"a": [1, 2], "b": [3]}, 4, 50.0)
    store = LabelStore(tmp_path / "lab")
    clone = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 500  # the path, not the labels
    assert {utt: clone[utt].tolist() for utt in clone} == {"a": [1, 2], "b": [3]}


@pytest.fixture
def small_store(tmp_path):
    rng = np.random.default_rng(4)
    labels = {f"u{i:03d}": rng.integers(0, 300, 1 + i % 9) for i in range(50)}
    return write_label_store(tmp_path / "lab", labels, 300, 50.0), labels


@pytest.mark.parametrize("name", ["labels.npy", "offsets.npy", "id_offsets.npy", "ids"])
def test_a_truncated_file_is_named(small_store, name):
    path, _ = small_store
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) - 3])
    with pytest.raises(DataError) as error:
        LabelStore(path)
    assert name in str(error.value)


def test_corrupted_files_are_named(small_store):
    path, labels = small_store
    (path / "labels.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(DataError, match=r"labels\.npy.*corrupted or truncated"):
        LabelStore(path)
    write_label_store(path, labels, 300, 50.0)
    (path / "info.json").write_text("{ broken")
    with pytest.raises(DataError, match=r"info\.json"):
        LabelStore(path)
    write_label_store(path, labels, 300, 50.0)
    (path / "ids").unlink()
    with pytest.raises(DataError, match=r"missing file of the label store.*ids|ids.*missing file"):
        LabelStore(path)


def test_corrupted_contents_are_found_on_reading_or_verifying(small_store):
    path, labels = small_store
    offsets = np.load(path / "offsets.npy")
    offsets[10] = offsets[-1] + 5  # points past the labels (same size: opening cannot tell)
    np.save(path / "offsets.npy", offsets)
    store = LabelStore(path)
    with pytest.raises(DataError, match=r"offsets\.npy"):
        store.array(store.id_at(9))
    with pytest.raises(DataError, match=r"offsets\.npy"):
        store.verify()
    write_label_store(path, labels, 300, 50.0)
    values = np.load(path / "labels.npy")
    values[3] = 299 + 7  # a label beyond k
    np.save(path / "labels.npy", values)
    with pytest.raises(DataError, match=r"labels\.npy.*306"):
        LabelStore(path).verify()
    write_label_store(path, labels, 300, 50.0)
    (path / "ids").write_bytes((path / "ids").read_bytes().replace(b"u001", b"u999"))  # no longer sorted
    with pytest.raises(DataError, match=r"ids.*not sorted"):
        LabelStore(path).verify()
    write_label_store(path, labels, 300, 50.0)
    LabelStore(path).verify()  # an intact store passes
