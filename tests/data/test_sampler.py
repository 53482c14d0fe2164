"""BucketBatchSampler: budget, coverage, shards, determinism, epochs, resume."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from audiossl.data.sampler import BucketBatchSampler

DURATIONS = np.random.default_rng(0).uniform(0.5, 8.0, size=203).round(3).tolist()
BUDGET = 30.0


def _padded_seconds(batch: list[int], durations: list[float]) -> float:
    return max(durations[i] for i in batch) * len(batch)


def test_batches_respect_the_budget_and_cover_every_utterance_once() -> None:
    sampler = BucketBatchSampler(DURATIONS, BUDGET, num_buckets=5, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(_padded_seconds(batch, DURATIONS) <= BUDGET for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(DURATIONS)))
    assert all(isinstance(i, int) for batch in batches for i in batch)


def test_bucketing_keeps_padding_low() -> None:
    batches = list(BucketBatchSampler(DURATIONS, BUDGET, num_buckets=10, seed=0))
    padded = sum(_padded_seconds(batch, DURATIONS) for batch in batches)
    assert padded < 1.25 * sum(DURATIONS)  # a random (unbucketed) batching pads far more
    shuffled = np.random.default_rng(0).permutation(len(DURATIONS))
    random_padded = sum(
        max(DURATIONS[i] for i in shuffled[k : k + 4]) * len(shuffled[k : k + 4]) for k in range(0, 203, 4)
    )
    assert padded < random_padded


def test_an_utterance_over_budget_gets_its_own_batch_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    durations = [1.0, 2.0, 50.0, 1.5, 40.0]
    with caplog.at_level(logging.WARNING):
        sampler = BucketBatchSampler(durations, 10.0, num_buckets=1, seed=0)
    assert "2 utterance(s) are longer than max_seconds_per_batch=10" in caplog.text
    batches = list(sampler)
    assert [2] in batches and [4] in batches
    assert sorted(i for batch in batches for i in batch) == [0, 1, 2, 3, 4]


def test_deterministic_for_a_seed_different_across_epochs_and_seeds() -> None:
    first = list(BucketBatchSampler(DURATIONS, BUDGET, seed=7))
    assert first == list(BucketBatchSampler(DURATIONS, BUDGET, seed=7))
    assert first != list(BucketBatchSampler(DURATIONS, BUDGET, seed=8))
    sampler = BucketBatchSampler(DURATIONS, BUDGET, seed=7)
    sampler.set_epoch(1)
    second_epoch = list(sampler)
    assert second_epoch != first
    assert sorted(i for batch in second_epoch for i in batch) == list(range(len(DURATIONS)))
    assert sorted(map(sorted, second_epoch)) != sorted(map(sorted, first))  # contents change, not only the order


def test_no_shuffle_is_sorted_by_length_and_the_same_every_epoch() -> None:
    sampler = BucketBatchSampler(DURATIONS, BUDGET, shuffle=False, num_buckets=1)
    batches = list(sampler)
    flat = [i for batch in batches for i in batch]
    assert flat == sorted(range(len(DURATIONS)), key=lambda i: (DURATIONS[i], i))
    sampler.set_epoch(3)
    assert list(sampler) == batches


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_are_disjoint_equal_length_and_jointly_cover(world_size: int) -> None:
    shards = [
        list(BucketBatchSampler(DURATIONS, BUDGET, seed=5, rank=rank, world_size=world_size))
        for rank in range(world_size)
    ]
    assert len({len(shard) for shard in shards}) == 1
    assert all(
        len(shard) == len(BucketBatchSampler(DURATIONS, BUDGET, seed=5, world_size=world_size)) for shard in shards
    )
    per_rank = [[i for batch in shard for i in batch] for shard in shards]
    every = [i for indices in per_rank for i in indices]
    assert sorted(every) == list(range(len(DURATIONS)))  # disjoint and covering: each index exactly once
    for shard in shards:
        assert all(_padded_seconds(batch, DURATIONS) <= BUDGET for batch in shard)


def test_uneven_batch_count_is_split_not_duplicated() -> None:
    durations = [1.0] * 9  # budget 3 s -> 3 batches of 3; 2 ranks need an even count
    shards = [list(BucketBatchSampler(durations, 3.0, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 2
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(9))


def test_drop_last_drops_the_surplus_batches() -> None:
    durations = [1.0] * 9
    shards = [list(BucketBatchSampler(durations, 3.0, seed=0, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 1
    seen = [i for shard in shards for batch in shard for i in batch]
    assert len(seen) == len(set(seen)) == 6


def test_fewer_utterances_than_ranks_repeats(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        shards = [list(BucketBatchSampler([1.0, 2.0], 10.0, rank=r, world_size=3)) for r in range(3)]
    assert [len(shard) for shard in shards] == [1, 1, 1]
    assert {i for shard in shards for batch in shard for i in batch} == {0, 1}
    assert "repeating 1 batch" in caplog.text


def test_resume_mid_epoch_gives_the_remaining_batches() -> None:
    reference = BucketBatchSampler(DURATIONS, BUDGET, seed=3, rank=1, world_size=2)
    reference.set_epoch(2)
    full_epoch = list(reference)

    interrupted = BucketBatchSampler(DURATIONS, BUDGET, seed=3, rank=1, world_size=2)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    done = [next(iterator) for _ in range(5)]
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["position"] == 5 and done == full_epoch[:5]

    resumed = BucketBatchSampler(DURATIONS, BUDGET, seed=3, rank=1, world_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what a trainer's epoch loop does: must not rewind
    assert list(resumed) == full_epoch[5:]
    assert list(resumed) == full_epoch  # the next pass over the same epoch is whole again
    resumed.set_epoch(3)
    assert list(resumed) != full_epoch


def test_state_dict_with_batches_done_and_mismatched_resume() -> None:
    sampler = BucketBatchSampler(DURATIONS, BUDGET, seed=3)
    iterator = iter(sampler)
    for _ in range(6):  # a prefetching DataLoader ran ahead of training
        next(iterator)
    state = sampler.state_dict(batches_done=4)
    assert state["position"] == 4
    with pytest.raises(ValueError, match="seed"):
        BucketBatchSampler(DURATIONS, BUDGET, seed=4).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        BucketBatchSampler(DURATIONS, BUDGET, seed=3, world_size=2).load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"durations": [1.0, 0.0], "max_seconds_per_batch": 5.0},
        {"durations": [1.0, float("nan")], "max_seconds_per_batch": 5.0},
        {"durations": [1.0], "max_seconds_per_batch": 0.0},
        {"durations": [1.0], "max_seconds_per_batch": 5.0, "rank": 2, "world_size": 2},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BucketBatchSampler(**kwargs)
