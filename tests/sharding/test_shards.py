"""audiossl.data.shards: --shard parsing, contiguous unit-aligned splits, part checks and the local pool."""

from __future__ import annotations

import pytest

from audiossl.data.shards import JobFailed, Shard, check_parts, fingerprint, part_meta, run_jobs, split_range
from audiossl.errors import ConfigError, DataError, UserError


@pytest.mark.parametrize("text", ["3/2", "0/0", "a/b", "1", "-1/2", "2/2", ""])
def test_bad_shards_are_user_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="shard"):
        Shard.parse(text)


def test_parse_and_name() -> None:
    shard = Shard.parse(" 1/4 ")
    assert (shard.index, shard.count, str(shard), shard.name) == (1, 4, "1/4", "shard-1-of-4")
    assert Shard.parse(None).whole


@pytest.mark.parametrize("total", [0, 1, 7, 11, 64, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("unit", [1, 4])
def test_split_is_a_contiguous_cover_on_unit_boundaries(total: int, count: int, unit: int) -> None:
    ranges = [Shard(i, count).range(total, unit) for i in range(count)]
    assert [i for block in ranges for i in block] == list(range(total))  # concatenation gives everything, once
    for block in ranges:
        assert block.start % unit == 0 or block.start == total
    sizes = [len(block) for block in ranges]
    assert max(sizes) - min(sizes) <= unit  # as even as whole units allow


def test_split_range_of_a_sub_range() -> None:
    parts = split_range(range(8, 20), 2, unit=4)
    assert parts == [range(8, 12), range(12, 20)]  # 3 units: 1 + 2


def _metas(count: int, total: int = 10, **extra):
    fp = fingerprint(f"u{i}" for i in range(total))
    return [(f"part{i}", part_meta(Shard(i, count), Shard(i, count).range(total), fp, **extra)) for i in range(count)]


def test_check_parts_orders_and_accepts_a_complete_set() -> None:
    metas = _metas(3)
    ordered = check_parts(list(reversed(metas)), "x")
    assert [location for location, _ in ordered] == ["part0", "part1", "part2"]


def test_check_parts_refuses_missing_mixed_and_foreign_parts() -> None:
    with pytest.raises(DataError, match="1/3 missing"):
        check_parts([m for m in _metas(3) if m[0] != "part1"], "x")
    with pytest.raises(DataError, match="shard 1/2 but part0 is of 3 shards"):
        check_parts(_metas(3)[:1] + _metas(2)[1:], "x")
    other = _metas(2, total=11)
    with pytest.raises(DataError, match="fingerprint"):
        check_parts([_metas(2)[0], other[1]], "x")
    with pytest.raises(DataError, match="frontend"):
        check_parts([_metas(2, frontend="a")[0], _metas(2, frontend="b")[1]], "x")
    with pytest.raises(DataError, match="twice"):
        check_parts([_metas(2)[0], _metas(2)[0]], "x")


def _square(value: int) -> int:
    return value * value


def _fail_on_three(value: int) -> int:
    if value == 3:
        raise DataError("bad utterance 'u3'", "data/wav.scp", 4)
    if value == 2:
        raise ValueError("a bug")
    return value


def test_run_jobs_in_processes_returns_results_in_task_order() -> None:
    assert run_jobs(_square, [1, 2, 3], num_jobs=2, show_progress=False) == [1, 4, 9]
    assert run_jobs(_square, [5], num_jobs=4, show_progress=False) == [25]  # one task: in process


def test_run_jobs_reraises_a_user_error_naming_the_file() -> None:
    with pytest.raises(UserError) as caught:
        run_jobs(_fail_on_three, [3, 1], num_jobs=2, show_progress=False)
    assert isinstance(caught.value, DataError)
    assert str(caught.value) == "data/wav.scp:4: bad utterance 'u3'"


def test_run_jobs_names_the_task_of_an_unexpected_failure() -> None:
    with pytest.raises(JobFailed, match=r"job task-2 failed:(.|\n)*ValueError: a bug"):
        run_jobs(_fail_on_three, [1, 2], num_jobs=2, show_progress=False, describe=lambda t: f"task-{t}")
