"""Shar export + ``data.backend: shar`` against the default loader on the same data dir (issue 14)."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from audiossl.cluster.labels import write_labels
from audiossl.data.backends import create_train_data
from audiossl.data.backends.shar import SharTrainData, check
from audiossl.data.config import DataConfig
from audiossl.data.kaldi import DataDir
from audiossl.data.shar import LABEL_FIELD, export_shar, read_shar_labels, shard_name
from audiossl.data.targets import read_labels
from audiossl.data.wav_scp import load_utterance
from audiossl.errors import ConfigError, DataError
from audiossl.testing.downstream import tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data dir of 12 utterances, its k-means label dir, its Shar export in shards of 2, with labels)."""
    root = tmp_path_factory.mktemp("shar")
    data_dir = tiny_corpus(root / "data", speakers=3, utts_per_speaker=4)
    data = DataDir.load(data_dir)
    generator = torch.Generator().manual_seed(0)
    labels = {utt: torch.randint(0, 50, (7 + i,), generator=generator) for i, utt in enumerate(data.utterance_ids)}
    label_dir = write_labels(root / "labels", labels, 50.0, info={"n_clusters": 50})
    export_shar(data_dir, root / "shar", shard_size=2, label_dir=label_dir)
    return data_dir, label_dir, root / "shar"


def config(**changes) -> DataConfig:
    settings = dict(max_seconds_per_batch=3.0, num_workers=0, max_utt_seconds=1.5, normalize="utterance", num_buckets=3)
    return DataConfig(**{**settings, **changes})


def epoch(data, count: int | None = None) -> list:
    """The next ``count`` (default: the rest of this epoch's) (batch, epoch, index) of an iterator over ``data``."""
    out, start = [], data.epoch
    iterator = iter(data)
    while count is None or len(out) < count:
        item = next(iterator)
        if item[1] != start:
            break
        out.append(item)
    return out


def test_labels_read_back_equal_the_data_dir(corpus):
    data_dir, label_dir, shar_dir = corpus
    data = DataDir.load(data_dir)
    stored = read_shar_labels(shar_dir, fields=[LABEL_FIELD])
    assert sorted(stored) == sorted(data.utterance_ids)
    frames, _ = read_labels(label_dir)
    for utt, entry in stored.items():
        assert entry["text"] == data.text[utt]
        assert entry["spk"] == data.utt2spk[utt]
        assert entry["emo"] == data.labels["emo"][utt]
        assert torch.equal(torch.as_tensor(entry[LABEL_FIELD]).long(), frames[utt].long())


def test_same_utterances_and_audio_as_the_default_loader(corpus):
    data_dir, _, shar_dir = corpus
    default = create_train_data([data_dir], config(), seed=3)
    shar = create_train_data([shar_dir], config(backend="shar"), seed=3)
    assert isinstance(shar, SharTrainData)
    reference = {}
    for batch, _, _ in epoch(default):
        for row, utt in enumerate(batch.ids):
            reference[utt] = batch.waveforms[row, : batch.lengths[row]]
    got = {}
    for batch, _, _ in epoch(shar):
        assert float(batch.lengths.max()) * len(batch.ids) <= 3.0 * 16000 or len(batch.ids) == 1
        for row, utt in enumerate(batch.ids):
            assert utt not in got
            got[utt] = batch.waveforms[row, : batch.lengths[row]]
    assert sorted(got) == sorted(reference)
    for utt, waveform in got.items():  # the same crop window, the same samples (wav holds them exactly)
        torch.testing.assert_close(waveform, reference[utt], rtol=0, atol=0)
    whole, _ = load_utterance(DataDir.load(data_dir), sorted(got)[0])
    assert whole.shape[0] >= got[sorted(got)[0]].shape[0]


def test_deterministic_per_seed(corpus):
    _, _, shar_dir = corpus
    runs = [[batch.ids for batch, _, _ in epoch(SharTrainData([shar_dir], config(), seed=seed))] for seed in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_two_ranks_two_workers_disjoint_and_covering(corpus):
    data_dir, _, shar_dir = corpus
    seen: Counter = Counter()
    indices = set()
    for rank in range(2):
        data = SharTrainData([shar_dir], config(num_workers=2), seed=1, rank=rank, world_size=2)
        for batch, _, index in epoch(data):
            seen.update(batch.ids)
            assert index not in indices
            indices.add(index)
    assert sorted(seen) == sorted(DataDir.load(data_dir).utterance_ids)
    assert set(seen.values()) == {1}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_without_loss_or_duplication(corpus, workers):
    _, _, shar_dir = corpus
    full = SharTrainData([shar_dir], config(num_workers=workers), seed=2)
    reference = {index: batch for batch, _, index in epoch(full)}
    interrupted = SharTrainData([shar_dir], config(num_workers=workers), seed=2)
    first = epoch(interrupted, count=3)
    state = interrupted.state_dict()
    resumed = SharTrainData([shar_dir], config(num_workers=workers), seed=2)
    resumed.load_state_dict(state)
    rest = epoch(resumed)
    ids = [utt for batch, _, _ in first + rest for utt in batch.ids]
    assert sorted(ids) == sorted(utt for batch in reference.values() for utt in batch.ids)
    assert len(ids) == len(set(ids))
    for batch, _, index in rest:  # each remaining batch equals the uninterrupted run's batch of that index
        assert batch.ids == reference[index].ids
        assert torch.equal(batch.waveforms, reference[index].waveforms)


def test_two_ranks_resume_mid_epoch_each_from_its_own_position(corpus):
    """As the engine does: every rank first loads rank 0's state, then its own (rank_states)."""
    _, _, shar_dir = corpus
    make = lambda rank: SharTrainData([shar_dir], config(num_workers=2), seed=3, rank=rank, world_size=2)  # noqa: E731
    reference = [{index: batch for batch, _, index in epoch(make(rank))} for rank in range(2)]
    interrupted = [make(rank) for rank in range(2)]
    firsts = [epoch(data, count=1 + rank) for rank, data in enumerate(interrupted)]
    states = [data.state_dict() for data in interrupted]
    for rank in range(2):
        resumed = make(rank)
        resumed.load_state_dict(states[0])
        if rank == 1:  # rank 0's position is not rank 1's: it must not stream until its own arrives
            with pytest.raises(DataError, match="rank 1"):
                next(iter(resumed))
        resumed.load_state_dict(states[rank])
        rest = epoch(resumed)
        ids = [utt for batch, _, _ in firsts[rank] + rest for utt in batch.ids]
        assert sorted(ids) == sorted(utt for batch in reference[rank].values() for utt in batch.ids)
        assert len(ids) == len(set(ids))
        for batch, _, index in rest:
            assert batch.ids == reference[rank][index].ids
            assert torch.equal(batch.waveforms, reference[rank][index].waveforms)


def test_resume_refuses_other_process_count(corpus):
    _, _, shar_dir = corpus
    data = SharTrainData([shar_dir], config(), seed=2, rank=0, world_size=2)
    epoch(data, count=1)
    alone = SharTrainData([shar_dir], config(), seed=2)
    with pytest.raises(ValueError, match="2 process"):
        alone.load_state_dict(data.state_dict())


def test_resume_refuses_other_worker_count(corpus):
    _, _, shar_dir = corpus
    data = SharTrainData([shar_dir], config(num_workers=2), seed=2)
    epoch(data, count=1)
    other = SharTrainData([shar_dir], config(num_workers=0), seed=2)
    with pytest.raises(ValueError, match="num_workers"):
        other.load_state_dict(data.state_dict())


def test_check_refuses_what_it_cannot_serve():
    with pytest.raises(ConfigError, match="global_stats"):
        check(DataConfig(backend="shar"), None)
    with pytest.raises(ConfigError, match="allow_pipes"):
        check(config(backend="shar", allow_pipes=True), None)


def test_killed_export_resumes_and_refuses_other_settings(corpus, tmp_path):
    data_dir, _, shar_dir = corpus
    out = tmp_path / "out"
    export_shar(data_dir, out, shard_size=5)
    (out / "shar_index.json").unlink()  # as if killed after shard 1 ...
    (out / shard_name("cuts", 2)).unlink()  # ... with shard 2 half written
    (out / ".partial-2").mkdir()
    with pytest.raises(DataError, match="unfinished"):
        SharTrainData([out], config())
    export_shar(data_dir, out, shard_size=5)
    assert sorted(read_shar_labels(out)) == sorted(DataDir.load(data_dir).utterance_ids)
    assert not (out / ".partial-2").exists()
    with pytest.raises(ConfigError, match="shard_size"):
        export_shar(data_dir, out, shard_size=4)


def test_missing_or_corrupt_shard_and_no_audio_field(corpus, tmp_path):
    _, _, shar_dir = corpus
    broken = tmp_path / "broken"
    shutil.copytree(shar_dir, broken)
    (broken / shard_name("recording", 1)).unlink()
    with pytest.raises(DataError, match="missing recording.000001.tar"):
        SharTrainData([broken], config())
    corrupt = tmp_path / "corrupt"
    shutil.copytree(shar_dir, corrupt)
    for shard in range(6):
        path = corrupt / shard_name("recording", shard)
        path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(DataError, match="Shar"):
        epoch(SharTrainData([corrupt], config()))
    no_audio = tmp_path / "no_audio"
    shutil.copytree(shar_dir, no_audio)
    text = (no_audio / "shar_index.json").read_text().replace('"recording"', '"speech"')
    (no_audio / "shar_index.json").write_text(text)
    with pytest.raises(DataError, match="no audio field"):
        SharTrainData([no_audio], config())


def test_hubert_pretraining_runs_on_shar_with_frame_targets(tmp_path):
    """Two hubert steps with data.backend=shar: the frame targets reach the batches from the label dir."""
    from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES
    from audiossl.train import pretrain, resolve_config

    data_dir = tiny_corpus(tmp_path / "data", speakers=2, utts_per_speaker=3)
    data = DataDir.load(data_dir)
    generator = torch.Generator().manual_seed(1)
    labels = {  # 50 Hz labels, one per 20 ms of audio, as kmeans label writes them
        utt: torch.randint(0, 6, (data.utt2num_samples[utt] // 320,), generator=generator) for utt in data.utterance_ids
    }
    label_dir = write_labels(tmp_path / "labels", labels, 50.0, info={"n_clusters": 6})
    export_shar(data_dir, tmp_path / "shar", shard_size=2)
    sets = [
        *TINY_PRETRAIN_OVERRIDES,
        "run.max_steps=2",
        "run.device=cpu",
        "run.tensorboard=false",
        "data.backend=shar",
        "objective.name=hubert",
        f"objective.config={{labels: {label_dir}, num_clusters: 6, code_dim: 8}}",
    ]
    result = pretrain(resolve_config("mspm-ast-tiny", sets), [tmp_path / "shar"], tmp_path / "run")
    lines = (tmp_path / "run" / "train.jsonl").read_text().splitlines()
    records = [record for record in map(json.loads, lines) if record.get("kind") == "train"]
    assert result.step == 2 and [record["step"] for record in records] == [1, 2]
    for record in records:  # the masked-prediction loss needs the frame targets on every batch
        assert math.isfinite(record["parts"]["masked"]) and 0 <= record["metrics"]["masked_accuracy"] <= 1


def test_flac_export_keeps_16_bit_samples_exactly(corpus, tmp_path):
    data_dir, _, _ = corpus
    export_shar(data_dir, tmp_path / "flac", shard_size=4, audio_format="flac")
    assert (tmp_path / "flac" / "recording.000000.tar").is_file()
    data = DataDir.load(data_dir)
    got = {}
    for batch, _, _ in epoch(
        SharTrainData([tmp_path / "flac"], config(max_utt_seconds=None, max_seconds_per_batch=30.0))
    ):
        got.update({utt: batch.waveforms[row, : batch.lengths[row]] for row, utt in enumerate(batch.ids)})
    assert sorted(got) == sorted(data.utterance_ids)
    for utt, waveform in got.items():  # the synthetic corpus is 16-bit PCM: FLAC holds it exactly
        torch.testing.assert_close(waveform, load_utterance(data, utt)[0], rtol=0, atol=0)
