"""SpecAugment on padded batches: masks inside valid frames, widths and counts, reproducibility."""

from __future__ import annotations

import pytest
import torch

from audiossl.audio import SpecAugment, SpecAugmentConfig
from audiossl.config import from_dict
from audiossl.errors import ConfigError


def batch_with_nan_padding(lengths: list[int], frames: int = 60, channels: int = 20) -> torch.Tensor:
    features = torch.randn(len(lengths), frames, channels) + 5.0  # never equal to the mask value 0
    for row, n in enumerate(lengths):
        features[row, n:] = float("nan")
    return features


def runs(flags: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool tensor."""
    out, start = [], None
    for index, flag in enumerate(flags.tolist() + [False]):
        if flag and start is None:
            start = index
        if not flag and start is not None:
            out.append((start, index - start))
            start = None
    return out


def test_masks_never_touch_padding() -> None:
    lengths = [60, 25, 3, 0, 1]
    augment = SpecAugment(time_masks=4, time_width=30, freq_masks=2, freq_width=8).train()
    for seed in range(40):
        features = batch_with_nan_padding(lengths)
        out = augment(features, torch.tensor(lengths), generator=torch.Generator().manual_seed(seed))
        for row, n in enumerate(lengths):
            assert out[row, n:].isnan().all()  # padding untouched (not masked, not filled)
            assert not out[row, :n].isnan().any()
        time, freq = augment.masks(torch.tensor(lengths), 60, 20, torch.Generator().manual_seed(seed))
        for row, n in enumerate(lengths):
            assert not time[row, n:].any()


def test_widths_counts_and_ratio_cap() -> None:
    augment = SpecAugment(time_masks=1, time_width=10, freq_masks=1, freq_width=4, max_time_ratio=0.2)
    lengths = torch.tensor([100, 30])
    seen_widths = set()
    for seed in range(100):
        time, freq = augment.masks(lengths, 100, 40, torch.Generator().manual_seed(seed))
        for row, cap in ((0, 10), (1, 6)):  # item 1: 20% of 30 frames
            time_runs, freq_runs = runs(time[row]), runs(freq[row])
            assert len(time_runs) <= 1 and len(freq_runs) <= 1
            assert all(width <= cap for _, width in time_runs)
            assert all(start + width <= int(lengths[row]) for start, width in time_runs)
            assert all(width <= 4 for _, width in freq_runs)
            seen_widths.update(width for _, width in time_runs if row == 0)
    assert max(seen_widths) == 10 and min(seen_widths) <= 2  # the whole range of widths is drawn


def test_reproducible_with_a_seed_and_identity_in_eval() -> None:
    augment = SpecAugment().train()
    features = torch.randn(3, 200, 80)
    lengths = torch.tensor([200, 150, 90])
    first = augment(features, lengths, generator=torch.Generator().manual_seed(7))
    again = augment(features, lengths, generator=torch.Generator().manual_seed(7))
    other = augment(features, lengths, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, features)
    assert augment.eval()(features, lengths) is features


def test_mask_value_and_all_channels_of_a_time_mask() -> None:
    augment = SpecAugment(time_masks=1, time_width=5, freq_masks=0, mask_value=-1.0).train()
    features = torch.randn(1, 50, 8) + 5.0
    counts = []
    for seed in range(10):
        out = augment(features, torch.tensor([50]), generator=torch.Generator().manual_seed(seed))
        masked_frames = (out == -1.0).all(dim=-1)[0]
        assert ((out == -1.0).any(dim=-1)[0] == masked_frames).all()  # whole frames are masked
        counts.append(int(masked_frames.sum()))
    assert max(counts) <= 5 and sum(counts) > 0  # widths 0..5 (0 is a legal draw)


def test_config_from_yaml_mapping_and_errors() -> None:
    config = from_dict(SpecAugmentConfig, {"time_masks": 10, "time_width": 20, "max_time_ratio": 0.05})
    assert SpecAugment(config).config.time_masks == 10
    with pytest.raises(ConfigError):
        from_dict(SpecAugmentConfig, {"time_mask": 1})
    with pytest.raises(ConfigError):
        SpecAugmentConfig(max_time_ratio=1.5)
