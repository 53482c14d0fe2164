"""Mask samplers: counts, never padding, determinism, shapes (spans, chunks), and clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.masking import (
    MaskConfig,
    chunk_mask,
    chunk_mask_from,
    masked_counts,
    random_mask,
    sample_mask,
    span_mask,
)

LENGTHS = torch.tensor([64, 40, 17, 64])


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_masked_counts_rule() -> None:
    lengths = torch.tensor([512, 100, 10])
    assert masked_counts(lengths, count=5).tolist() == [5, 5, 5]
    assert masked_counts(lengths, ratio=0.25).tolist() == [128, 25, 2]
    assert masked_counts(torch.tensor([3]), ratio=0.1).tolist() == [1]  # at least one
    # Both: the ratio caps the count for short items.
    assert masked_counts(lengths, count=400, ratio=0.8).tolist() == [400, 80, 8]


def test_masked_counts_error_names_item_and_length() -> None:
    with pytest.raises(ConfigError, match=r"400 tokens of batch item 1: it has only 300 tokens"):
        masked_counts(torch.tensor([512, 300, 600]), count=400)


@pytest.mark.parametrize("kind", ["random", "span", "chunk"])
def test_masks_never_touch_padding_and_are_deterministic(kind: str) -> None:
    config = MaskConfig(kind=kind, count=12, ratio=0.5, start_prob=0.2, span_length=3)
    valid = lengths_to_mask(LENGTHS, 64)
    for seed in range(20):
        mask = sample_mask(config, LENGTHS, 64, grid_width=4, generator=_gen(seed))
        assert mask.shape == (4, 64) and mask.dtype == torch.bool
        assert not (mask & ~valid).any()
        assert mask.sum(dim=1).min() > 0
        assert torch.equal(mask, sample_mask(config, LENGTHS, 64, grid_width=4, generator=_gen(seed)))
    assert not torch.equal(
        sample_mask(config, LENGTHS, 64, 4, generator=_gen(1)), sample_mask(config, LENGTHS, 64, 4, generator=_gen(2))
    )


def test_random_mask_exact_counts_and_uniform() -> None:
    counts = masked_counts(LENGTHS, count=8)
    hits = torch.zeros(4, 64)
    trials = 400
    generator = _gen()
    for _ in range(trials):
        mask = random_mask(LENGTHS, counts, 64, generator)
        assert mask.sum(dim=1).tolist() == [8, 8, 8, 8]
        hits += mask.float()
    # Item 2 (17 tokens): every valid token masked with probability 8/17.
    rate = hits[2, :17] / trials
    assert torch.allclose(rate, torch.full_like(rate, 8 / 17), atol=0.1)


def test_span_mask_counts_with_unit_spans() -> None:
    # With spans of one token no two spans overlap, so the masked count is the span count:
    # floor(p * L) or its ceiling, with mean p * L.
    lengths = torch.tensor([50, 37])
    totals = []
    generator = _gen(3)
    for _ in range(300):
        mask = span_mask(lengths, 50, start_prob=0.13, span_length=1, generator=generator)
        counts = mask.sum(dim=1)
        for length, count in zip(lengths.tolist(), counts.tolist(), strict=True):
            assert count in (math.floor(0.13 * length), math.ceil(0.13 * length))
        totals.append(counts.double())
    assert torch.allclose(torch.stack(totals).mean(dim=0), lengths.double() * 0.13, atol=0.1)


def test_span_mask_runs_are_whole_spans() -> None:
    lengths = torch.tensor([80, 33, 12])
    generator = _gen(5)
    for _ in range(50):
        mask = span_mask(lengths, 80, start_prob=0.05, span_length=6, min_spans=1, generator=generator)
        for item, length in enumerate(lengths.tolist()):
            row = mask[item].tolist()
            assert not any(row[length:])
            runs, run = [], 0
            for value in row[:length] + [False]:
                if value:
                    run += 1
                elif run:
                    runs.append(run)
                    run = 0
            assert runs and min(runs) >= 6  # every span is whole, overlapping ones merge


def test_span_mask_too_short_for_min_spans() -> None:
    with pytest.raises(ConfigError, match=r"batch item 1: it has only 7 tokens"):
        span_mask(torch.tensor([40, 7]), 40, start_prob=0.065, span_length=10, min_spans=1)
    # Without min_spans a short item simply gets no span.
    mask = span_mask(torch.tensor([40, 7]), 40, start_prob=0.5, span_length=10, generator=_gen())
    assert not mask[1].any() and mask[0].any()


def _sequential_chunks(length: int, count: int, width: int, arrival, sides, tie_keys) -> torch.Tensor:
    """SSAST's procedure written plainly: add chunks in arrival order until ``count`` tokens are masked."""
    size = arrival.shape[0]
    rows = size // width
    chosen: list[int] = []
    taken = set()
    for corner in sorted(range(length), key=lambda s: float(arrival[s])):
        t0, f0 = divmod(corner, width)
        side = int(sides[corner])
        new = [
            t * width + f
            for t in range(t0, min(t0 + side, rows))
            for f in range(f0, min(f0 + side, width))
            if t * width + f < length and t * width + f not in taken
        ]
        for token in sorted(new, key=lambda s: float(tie_keys[s])):
            taken.add(token)
            chosen.append(token)
        if len(chosen) >= count:
            break
    mask = torch.zeros(size, dtype=torch.bool)
    mask[chosen[:count]] = True
    return mask


def test_chunk_mask_equals_sequential_reference() -> None:
    generator = _gen(11)
    width, size = 6, 60
    lengths = torch.tensor([60, 42, 18])
    counts = torch.tensor([25, 17, 9])
    arrival = torch.rand(3, size, generator=generator)
    sides = torch.randint(2, 5, (3, size), generator=generator)
    tie_keys = torch.rand(3, size, generator=generator)
    fast = chunk_mask_from(lengths, counts, width, arrival, sides, tie_keys)
    for item in range(3):
        slow = _sequential_chunks(
            int(lengths[item]), int(counts[item]), width, arrival[item], sides[item], tie_keys[item]
        )
        assert torch.equal(fast[item], slow), item


def _masked_neighbours(mask: torch.Tensor, width: int) -> float:
    grid = mask.view(-1, width).float()
    neighbours = torch.zeros_like(grid)
    neighbours[1:] += grid[:-1]
    neighbours[:-1] += grid[1:]
    neighbours[:, 1:] += grid[:, :-1]
    neighbours[:, :-1] += grid[:, 1:]
    return float((neighbours * grid).sum() / grid.sum())


def test_chunk_mask_is_clustered_and_exact() -> None:
    lengths = torch.tensor([512, 256])
    counts = torch.tensor([100, 50])
    generator = _gen(2)
    chunky, scattered = [], []
    for _ in range(10):
        mask = chunk_mask(lengths, counts, 512, grid_width=8, chunk_min=3, chunk_max=5, generator=generator)
        assert mask.sum(dim=1).tolist() == [100, 50]
        assert not mask[1, 256:].any()
        chunky.append(_masked_neighbours(mask[0], 8))
        scattered.append(_masked_neighbours(random_mask(lengths, counts, 512, generator)[0], 8))
    # Chunks of 3-5 x 3-5 give most masked patches 3-4 masked neighbours; random ones about 0.8.
    assert sum(chunky) / 10 > 2.5 > 1.2 > sum(scattered) / 10


def test_mask_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs count or ratio"):
        MaskConfig(kind="random")
    with pytest.raises(ConfigError, match="ratio"):
        MaskConfig(kind="random", ratio=1.5)
    with pytest.raises(ConfigError, match="chunk"):
        MaskConfig(kind="chunk", count=4, chunk_min=5, chunk_max=3)
