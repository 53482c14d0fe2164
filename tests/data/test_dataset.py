"""AudioDataset (utterances, labels, durations, crops) and collate (padding, lengths)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchaudio.functional
from _datadir_factory import make_data_dir, noise, table_lines, write_lines, write_wav

from audiossl.audio.io import load_audio
from audiossl.cluster.labels import write_labels
from audiossl.data.dataset import AudioDataset, Utterance, collate
from audiossl.data.kaldi import DataDir, read_table
from audiossl.data.sampler import BucketBatchSampler
from audiossl.data.targets import IGNORE, FrameTargets, TokenClock, UtteranceTargets
from audiossl.errors import DataError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data_dir(tmp_path, num_utts=5)


def test_items_match_the_audio_and_labels(data: Path) -> None:
    dataset = AudioDataset(data, sample_rate=16000, labels=["spk", "text", "emo"])
    scp, utt2spk, text = read_table(data / "wav.scp"), read_table(data / "utt2spk"), read_table(data / "text")
    assert len(dataset) == 5 and dataset.ids == sorted(scp, key=str.encode)
    for index, utt in enumerate(dataset.ids):
        item = dataset[index]
        assert item.id == utt and item.waveform.dtype == torch.float32 and item.waveform.ndim == 1
        torch.testing.assert_close(item.waveform, load_audio(scp[utt])[0])
        assert item.labels == {"spk": utt2spk[utt], "text": text[utt], "emo": read_table(data / "utt2emo")[utt]}
    assert [u.id for u in dataset[[3, 1]]] == [dataset.ids[3], dataset.ids[1]]


def test_resampling(data: Path) -> None:
    dataset = AudioDataset(data, sample_rate=8000)
    full = load_audio(read_table(data / "wav.scp")[dataset.ids[2]])[0]
    torch.testing.assert_close(dataset[2].waveform, torchaudio.functional.resample(full, 16000, 8000))


def test_durations_from_utt2dur_or_headers_agree(data: Path) -> None:
    from_table = AudioDataset(data).durations
    (data / "utt2dur").unlink()
    from_headers = AudioDataset(data).durations
    expected = [0.2 + 0.05 * i for i in (0, 3, 1, 4, 2)]  # sorted ids: spkA-utt00, spkA-utt03, spkB-utt01, ...
    assert from_table == pytest.approx(expected, abs=1e-4)
    assert from_headers == pytest.approx(expected, abs=1e-4)


def test_durations_from_utt2num_samples_and_segments(tmp_path: Path) -> None:
    write_wav(tmp_path / "rec.wav", noise(1.0, 0, 8000), 8000)
    segments = {"u1": "rec 0.0 0.3", "u2": "rec 0.3 -1"}
    DataDir(wav_scp={"rec": str(tmp_path / "rec.wav")}, utt2num_samples={"u1": 2400, "u2": 5600}).save(tmp_path / "d")
    write_lines(tmp_path / "d" / "segments", segments)
    assert AudioDataset(tmp_path / "d").durations == pytest.approx([0.3, 0.7])
    (tmp_path / "d" / "utt2num_samples").unlink()
    assert AudioDataset(tmp_path / "d").durations == pytest.approx([0.3, 0.7])  # headers for the -1 end
    write_lines(tmp_path / "d" / "segments", {"u1": "rec 0.0 0.3", "u2": "rec 0.3 0.9"})
    assert AudioDataset(tmp_path / "d").durations == pytest.approx([0.3, 0.6])


def test_missing_label_table_and_missing_label(data: Path) -> None:
    with pytest.raises(DataError, match="utt2lang does not exist") as error:
        AudioDataset(data, labels=["lang"])
    assert error.value.path == str(data / "utt2lang") and "emo" in str(error.value)
    write_lines(data / "utt2emo", table_lines(data / "utt2emo")[1:])
    with pytest.raises(DataError, match="no 'emo' label") as error:
        AudioDataset(data, labels=["emo"])
    assert error.value.path == str(data / "utt2emo") and table_lines(data / "wav.scp")[0].split()[0] in str(error.value)
    (data / "utt2spk").unlink()
    with pytest.raises(DataError, match="utt2spk does not exist"):
        AudioDataset(data, labels=["spk"])


def test_max_seconds_crops_a_reproducible_window(data: Path) -> None:
    dataset = AudioDataset(data, max_seconds=0.25, crop_seed=3)
    assert dataset.durations == pytest.approx([0.2, 0.25, 0.25, 0.25, 0.25])
    full = load_audio(read_table(data / "wav.scp")[dataset.ids[3]])[0]  # 0.4 s
    first = dataset[3].waveform
    assert first.shape == (4000,)
    offset = next(k for k in range(full.shape[0] - 4000 + 1) if torch.equal(full[k : k + 4000], first))
    assert torch.equal(dataset[3].waveform, first)  # same epoch, same window
    dataset.set_epoch(1)
    second = dataset[3].waveform
    assert not torch.equal(second, first)
    assert any(torch.equal(full[k : k + 4000], second) for k in range(full.shape[0] - 4000 + 1) if k != offset)
    assert dataset[0].waveform.shape == (3200,)  # shorter than max_seconds: untouched


def test_collate_pads_with_zeros() -> None:
    items = [
        Utterance("a", torch.ones(3), {"spk": "s1"}),
        Utterance("b", torch.full((5,), 2.0), {"spk": "s2"}),
        Utterance("c", torch.full((1,), 3.0), {"spk": "s1"}),
    ]
    batch = collate(items)
    assert batch.ids == ["a", "b", "c"] and batch.labels == {"spk": ["s1", "s2", "s1"]}
    assert batch.lengths.dtype == torch.int64 and batch.lengths.tolist() == [3, 5, 1]
    expected = torch.tensor([[1, 1, 1, 0, 0], [2, 2, 2, 2, 2], [3, 0, 0, 0, 0]], dtype=torch.float32)
    assert batch.waveforms.dtype == torch.float32 and torch.equal(batch.waveforms, expected)
    with pytest.raises(ValueError):
        collate([])


def test_dataloader_with_bucket_sampler(data: Path) -> None:
    dataset = AudioDataset(data, labels=["spk"])
    sampler = BucketBatchSampler(dataset.durations, max_seconds_per_batch=1.0, num_buckets=2, seed=1)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    seen = []
    for batch in loader:
        assert batch.waveforms.shape == (len(batch.ids), int(batch.lengths.max()))
        assert batch.waveforms.shape[1] * len(batch.ids) <= 16000  # the 1 s budget, in samples
        for row, utt in enumerate(batch.ids):
            item = dataset[dataset.ids.index(utt)]
            torch.testing.assert_close(batch.waveforms[row, : batch.lengths[row]], item.waveform)
            assert not batch.waveforms[row, batch.lengths[row] :].any()
        seen += batch.ids
    assert sorted(seen) == sorted(dataset.ids)


def clock_of(frame_samples: int = 160) -> TokenClock:
    """A token clock of one token per ``frame_samples`` samples (100 Hz at 16 kHz)."""
    return TokenClock.measure(lambda samples: torch.div(samples, frame_samples, rounding_mode="floor"), 16000, 16000)


def test_token_clock_counts_like_the_function_it_measured() -> None:
    def tokens_of(samples: torch.Tensor) -> torch.Tensor:  # a conv-like stride formula, 0 below one window
        return torch.div((samples - 400).clamp(min=-320), 320, rounding_mode="floor") + 1

    clock = TokenClock.measure(tokens_of, 16000, 20000)
    assert clock.rate == 50.0
    samples = torch.arange(0, 20001, 37)
    assert [clock.count(int(n)) for n in samples] == tokens_of(samples).clamp(min=0).tolist()
    with pytest.raises(ValueError, match="past"):
        clock.count(20001)


def test_frame_targets_travel_with_the_batch_cropped_like_the_audio(data: Path, tmp_path: Path) -> None:
    dataset = AudioDataset(data, max_seconds=0.25, crop_seed=3)
    full = AudioDataset(data)
    labels = {utt: torch.arange(round(seconds * 100)) for utt, seconds in zip(full.ids, full.durations, strict=True)}
    write_labels(tmp_path / "labels", labels, 100.0)
    dataset.set_targets({"frames": FrameTargets([tmp_path / "labels"], 1000, clock_of())})
    items = [dataset[index] for index in range(len(dataset))]
    for item in items:
        frames = item.waveform.shape[0] // 160
        start = round(item.offset * 100)
        assert torch.equal(item.targets["frames"], torch.arange(start, start + frames))
    assert any(item.offset > 0 for item in items)  # some crops moved: their targets start later
    batch = collate(items)
    counts = [item.waveform.shape[0] // 160 for item in items]
    assert batch.targets["frames"].shape == (len(items), max(counts))
    assert batch.target_lengths["frames"].tolist() == counts
    assert (batch.targets["frames"][0, counts[0] :] == IGNORE).all()
    moved = batch.to("cpu")
    assert torch.equal(moved.targets["frames"], batch.targets["frames"])


def test_misaligned_frame_targets_name_the_utterance(data: Path, tmp_path: Path) -> None:
    dataset = AudioDataset(data)
    write_labels(tmp_path / "labels", {utt: torch.zeros(3, dtype=torch.long) for utt in dataset.ids}, 100.0)
    dataset.set_targets({"frames": FrameTargets([tmp_path / "labels"], 10, clock_of())})
    with pytest.raises(DataError, match=f"utterance {dataset.ids[0]!r} has 3 labels but the encoder gives 20 frames"):
        dataset[0]


def test_utterance_targets_stack_per_item() -> None:
    table = {"a": torch.tensor(2), "b": torch.tensor(0)}
    items = [Utterance(utt, torch.zeros(100), targets={"spk": table[utt]}) for utt in ("b", "a")]
    batch = collate(items)
    assert batch.targets["spk"].tolist() == [0, 2] and batch.target_lengths["spk"].tolist() == [1, 1]
    source = UtteranceTargets(table, "pseudo-label")
    with pytest.raises(DataError, match="utterance 'c' has no pseudo-label"):
        source("c", 0.0, 100, True)
    assert int(UtteranceTargets(table, "pseudo-label", missing=torch.tensor(-1))("c", 0.0, 100, True)) == -1
