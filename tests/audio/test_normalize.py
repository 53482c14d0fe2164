"""Feature normalisation: GlobalStats (streaming, merge, save/load, apply), compute_global_stats, per-utterance CMVN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.compliance.kaldi as kaldi
from audio_signals import speech_like

from audiossl.audio import GlobalStats, cmvn
from audiossl.data.features import compute_global_stats
from audiossl.errors import ConfigError, DataError


def padded(items: list[torch.Tensor], fill: float = 1e4) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.full((len(items), max(item.shape[0] for item in items), items[0].shape[1]), fill)
    for row, item in enumerate(items):
        batch[row, : item.shape[0]] = item
    return batch, torch.tensor([item.shape[0] for item in items])


def random_items(seed: int, sizes: tuple[int, ...] = (30, 7, 0, 18), channels: int = 5) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [3.0 + 2.0 * torch.randn(n, channels, generator=generator) for n in sizes]


def test_global_stats_match_numpy_over_valid_frames() -> None:
    items = random_items(0)
    stats = GlobalStats()
    stats.update(*padded(items[:2]))
    stats.update(*padded(items[2:]))
    frames = torch.cat(items).double().numpy()
    assert stats.count == frames.shape[0] and stats.utterances == 4
    np.testing.assert_allclose(stats.mean, frames.mean(0), rtol=1e-10)
    np.testing.assert_allclose(stats.var, frames.var(0), rtol=1e-8)
    assert stats.scalar_mean == pytest.approx(frames.mean(), rel=1e-10)
    assert stats.scalar_std == pytest.approx(frames.std(), rel=1e-8)


def test_merge_equals_one_pass() -> None:
    items = random_items(1)
    whole, first, second = GlobalStats(), GlobalStats(), GlobalStats()
    whole.update(*padded(items))
    first.update(*padded(items[:1]))
    second.update(*padded(items[1:]))
    merged = first.merge(second)
    assert merged.count == whole.count and merged.utterances == whole.utterances
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)
    np.testing.assert_allclose(merged.sum_squares, whole.sum_squares, rtol=1e-12)
    assert GlobalStats().merge(whole).count == whole.count


def test_apply_normalises_valid_frames_and_zeroes_padding() -> None:
    items = random_items(2)
    stats = GlobalStats()
    stats.update(*padded(items))
    features, lengths = padded(items)
    normalised = stats.apply(features, lengths)
    valid = torch.cat([normalised[row, :n] for row, n in enumerate(lengths.tolist())]).double()
    assert torch.allclose(valid.mean(0), torch.zeros(5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(valid.std(0, unbiased=False), torch.ones(5, dtype=torch.float64), atol=1e-4)
    assert (normalised[1, 7:] == 0).all()
    scalar = stats.apply(features, lengths, scalar=True)
    expected = (features[0, :30] - stats.scalar_mean) / stats.scalar_std
    assert torch.allclose(scalar[0, :30], expected, atol=1e-5)


def test_save_load_round_trip_is_atomic_and_checked(tmp_path: Path) -> None:
    stats = GlobalStats(frontend="fbank")
    stats.update(*padded(random_items(3)))
    path = tmp_path / "stats" / "global.npz"
    stats.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["global.npz"]  # no temporary file left
    loaded = GlobalStats.load(path)
    assert (loaded.count, loaded.utterances, loaded.frontend) == (stats.count, stats.utterances, "fbank")
    np.testing.assert_array_equal(loaded.sum, stats.sum)
    np.testing.assert_array_equal(loaded.sum_squares, stats.sum_squares)
    with pytest.raises(DataError, match="not found"):
        GlobalStats.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(DataError):
        GlobalStats.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError):
        GlobalStats().apply(torch.zeros(1, 2, 5), torch.tensor([2]))


def write_data_dir(root: Path, signals: dict[str, torch.Tensor]) -> Path:
    """A Kaldi data dir (wav.scp, utt2spk) over 16 kHz float WAV files written under ``root``."""
    (root / "wav").mkdir()
    data_dir = root / "data"
    data_dir.mkdir()
    lines = []
    for utt, signal in signals.items():
        soundfile.write(root / "wav" / f"{utt}.wav", signal.numpy(), 16000, subtype="FLOAT")
        lines.append(f"{utt} {root / 'wav' / f'{utt}.wav'}\n")
    (data_dir / "wav.scp").write_text("".join(sorted(lines)))
    (data_dir / "utt2spk").write_text("".join(f"{utt} {utt}\n" for utt in sorted(signals)))
    return data_dir


def test_compute_global_stats_over_a_data_dir(tmp_path: Path) -> None:
    signals = {f"utt{i}": speech_like(n, i) for i, n in enumerate((16000, 8000, 3000, 12000, 300))}
    data_dir = write_data_dir(tmp_path, signals)
    stats = compute_global_stats(data_dir, "fbank", {"num_mel_bins": 40}, batch_seconds=1.5, progress=False)
    long_enough = [s for s in signals.values() if s.shape[0] >= 400]  # utt4 is shorter than a frame: no frames
    frames = torch.cat([kaldi.fbank(s.unsqueeze(0), num_mel_bins=40, energy_floor=0.0) for s in long_enough])
    assert stats.count == frames.shape[0] and stats.utterances == 5 and stats.frontend == "fbank"
    np.testing.assert_allclose(stats.mean, frames.double().mean(0).numpy(), atol=1e-4)
    np.testing.assert_allclose(stats.std, frames.double().std(0, unbiased=False).numpy(), rtol=1e-3)
    with pytest.raises(ConfigError):
        compute_global_stats(data_dir, "wav2vec2_cnn", progress=False)


def test_cmvn_uses_each_items_valid_frames_only() -> None:
    items = random_items(4)
    features, lengths = padded(items)
    for norm_vars in (True, False):
        out = cmvn(features, lengths, norm_vars=norm_vars)
        for row, item in enumerate(items):
            if item.shape[0] == 0:
                continue
            expected = item - item.mean(0)
            if norm_vars:
                expected = expected / item.std(0, unbiased=False)
            assert torch.allclose(out[row, : item.shape[0]], expected, atol=1e-4)
            alone = cmvn(item.unsqueeze(0), torch.tensor([item.shape[0]]), norm_vars=norm_vars)
            assert torch.allclose(out[row, : item.shape[0]], alone[0], atol=1e-6)
            assert (out[row, item.shape[0] :] == 0).all()
    assert (cmvn(features, lengths)[2] == 0).all()  # the item without frames
