"""Sharding offline stages: ``--shard I/N`` (one shard per cluster node) and ``--nj N`` (local processes).

The contract every sharded stage keeps (``kmeans label``, ``kmeans sample``, ``extract``,
``features stats``, ``data validate``):

* Work is a list of items in a fixed order (a data dir's utterances in Kaldi sort order, or
  the k-means sample in its hash order). :meth:`Shard.range` gives shard ``I`` of ``N`` a
  *contiguous* block of that list, so merging the shards' outputs is concatenation in shard
  order. Blocks start on multiples of ``unit`` items (a stage's chunk: batches never span a
  chunk), so an item is computed in the same batch whether the run is sharded or not.
* Each shard writes a *part* (a file or dir named with :func:`part_name`) recording its
  shard, its range and a fingerprint of the whole item list (:func:`part_meta`); a merge
  reads all parts, checks with :func:`check_parts` that they are exactly shards ``0..N-1``
  of the same list, and produces what the unsharded run produces.
* ``--nj J`` splits a (shard's) range into ``J`` sub-ranges on the same unit boundaries
  (:func:`split_range`) and runs them in ``J`` processes (:func:`run_jobs`), then merges.

:func:`run_jobs` is the local pool: one process per job (spawned, not forked: torch's thread
pools do not survive a fork), a progress bar fed by every job (:func:`advance`), the first
failure stops the others and is re-raised in the parent (a :class:`~audiossl.errors.UserError`
keeps its class and message, naming the file or utterance), and Ctrl-C stops every job.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import multiprocessing as mp
import os
import queue
import re
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from audiossl.errors import ConfigError, DataError, UserError
from audiossl.progress import progress

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SHARD_TEXT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``: a contiguous block of a stage's ordered items."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"shard count must be >= 1, got {self.index}/{self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError(f"shard index must be in 0..{self.count - 1}, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str | Shard | None) -> Shard:
        """``"I/N"`` (e.g. ``"0/4"``; ``$SLURM_ARRAY_TASK_ID/4`` in an array job); None: the whole list."""
        if text is None:
            return cls()
        if isinstance(text, Shard):
            return text
        match = _SHARD_TEXT.match(str(text))
        if match is None:
            raise ConfigError(f"a shard is I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def whole(self) -> bool:
        """True for the unsharded run (0/1)."""
        return self.count == 1

    @property
    def name(self) -> str:
        """``shard-I-of-N``: how a shard's part is named on disk."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def range(self, total: int, unit: int = 1) -> range:
        """This shard's block of ``range(total)``; boundaries are multiples of ``unit`` (or ``total``)."""
        return split_range(range(total), self.count, unit)[self.index]

    def select(self, items: Sequence[T], unit: int = 1) -> list[T]:
        """This shard's block of ``items``."""
        block = self.range(len(items), unit)
        return list(items[block.start : block.stop])


def split_range(items: range, parts: int, unit: int = 1) -> list[range]:
    """Cut ``items`` (step 1) into ``parts`` contiguous ranges, as even as whole units allow.

    Boundaries fall on ``items.start + k * unit``; with fewer units than parts the last
    ranges are empty. Deterministic: the same arguments always give the same ranges.
    """
    if parts < 1 or unit < 1:
        raise ConfigError(f"parts and unit must be >= 1, got {parts} and {unit}")
    if items.step != 1:
        raise ValueError("split_range needs a range with step 1")
    units = -(-len(items) // unit)
    bounds = [min(items.start + (units * i // parts) * unit, items.stop) for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


def fingerprint(items: Iterable[str]) -> str:
    """A short hash of an ordered list of ids: parts of one run must agree on it."""
    digest = hashlib.sha1()
    count = 0
    for item in items:
        digest.update(item.encode("utf-8") + b"\n")
        count += 1
    return f"{count}:{digest.hexdigest()[:16]}"


def part_name(shard: Shard, suffix: str = "") -> str:
    """The file or dir name of a shard's part, e.g. ``shard-0-of-4`` or ``shard-0-of-4.npz``."""
    return shard.name + suffix


def part_path(out: str | Path, shard: Shard) -> Path:
    """Where shard ``shard`` of the output ``out`` goes: ``OUT/shard-I-of-N`` for a dir, ``stem.shard-I-of-N.ext``
    beside a file (an ``out`` with a suffix is a file)."""
    out = Path(out)
    if out.suffix:
        return out.with_name(f"{out.stem}.{shard.name}{out.suffix}")
    return out / shard.name


def find_parts(out: str | Path) -> list[Path]:
    """Every shard part of the output ``out`` on disk (see :func:`part_path`), in name order."""
    out = Path(out)
    if out.suffix:
        return sorted(out.parent.glob(f"{glob.escape(out.stem)}.shard-*-of-*{glob.escape(out.suffix)}"))
    return sorted(path for path in out.glob("shard-*-of-*") if path.is_dir())


def part_meta(shard: Shard, block: range, items_fingerprint: str, **extra: Any) -> dict[str, Any]:
    """What a part records about itself, for :func:`check_parts`."""
    return {
        "shard": str(shard),
        "start": block.start,
        "stop": block.stop,
        "fingerprint": items_fingerprint,
        **extra,
    }


def check_parts(metas: Sequence[tuple[str, dict[str, Any]]], what: str) -> list[tuple[str, dict[str, Any]]]:
    """Order ``(location, meta)`` parts by shard and check they are all of one run, complete and contiguous.

    Raises :class:`~audiossl.errors.DataError` naming the part that is missing, repeated, from
    another shard count, another item list (fingerprint) or other settings (any other key that differs).
    """
    if not metas:
        raise DataError(f"no shard parts of {what} found (run the shards first)")
    parsed = []
    for location, meta in metas:
        try:
            shard = Shard.parse(meta["shard"])
        except (KeyError, UserError):
            raise DataError(f"not a shard part of {what} (no valid 'shard')", location) from None
        parsed.append((shard, location, meta))
    count = parsed[0][0].count
    reference_location, reference = parsed[0][1], parsed[0][2]
    seen: dict[int, str] = {}
    for shard, location, meta in parsed:
        if shard.count != count:
            raise DataError(f"part is shard {shard} but {reference_location} is of {count} shards", location)
        if shard.index in seen:
            raise DataError(f"shard {shard} appears twice (also {seen[shard.index]})", location)
        seen[shard.index] = location
        for key in set(reference) | set(meta):
            if key in ("shard", "start", "stop") or key.startswith("_"):
                continue
            if meta.get(key) != reference.get(key):
                raise DataError(
                    f"part of another run: {key} is {meta.get(key)!r} here, {reference.get(key)!r} in "
                    f"{reference_location}",
                    location,
                )
    missing = [str(Shard(i, count)) for i in range(count) if i not in seen]
    if missing:
        raise DataError(f"{what}: shard(s) {', '.join(missing)} missing (have {len(seen)} of {count})")
    ordered = sorted(parsed, key=lambda item: item[0].index)
    position = 0
    for _, location, meta in ordered:
        if meta["start"] != position:
            raise DataError(f"part starts at item {meta['start']}, expected {position}", location)
        position = meta["stop"]
    return [(location, meta) for _, location, meta in ordered]


# ---------------------------------------------------------------------------------------------
# The local pool.

_progress_queue: Any = None  # set in a job process: where advance() reports
_local_bar: Any = None  # set in the parent while a single job runs in-process


def advance(count: int = 1) -> None:
    """Report ``count`` finished items of the current job to the progress bar (a no-op outside jobs)."""
    if _progress_queue is not None:
        _progress_queue.put(("progress", None, count))
    elif _local_bar is not None:
        _local_bar.update(count)


class JobFailed(RuntimeError):
    """A job raised an unexpected exception (not a user error); carries its traceback text."""


#: Environment variable fixing every job's intra-op thread count (default: the cores shared by the jobs).
THREADS_ENV = "AUDIOSSL_JOB_THREADS"


def default_threads(num_jobs: int) -> int:
    """Intra-op threads per job: ``$AUDIOSSL_JOB_THREADS``, else the machine's cores shared by the jobs.

    Matmul kernels may split sums differently for another thread count, so float outputs of
    encoders are bit-identical between runs only at the same thread count: set the variable to
    the unsharded run's count (``torch.get_num_threads()``) when that matters more than speed.
    """
    fixed = os.environ.get(THREADS_ENV)
    if fixed:
        try:
            return max(1, int(fixed))
        except ValueError:
            raise ConfigError(f"{THREADS_ENV} must be a whole number of threads, got {fixed!r}") from None
    return max(1, (os.cpu_count() or 1) // max(num_jobs, 1))


def run_jobs(
    function: Callable[..., T],
    tasks: Sequence[Any],
    *,
    num_jobs: int | None = None,
    desc: str = "jobs",
    total: int | None = None,
    unit: str = "it",
    describe: Callable[[Any], str] = repr,
    show_progress: bool = True,
) -> list[T]:
    """``[function(task) for task in tasks]``, in ``num_jobs`` processes (None: one per task).

    ``function`` must be importable (a module-level function) and call :func:`advance` as it
    finishes items; ``total`` is the number of items over all tasks for the progress bar.
    One task, or ``num_jobs == 1``, runs in this process (no pickling, same result). A task
    that fails stops every other job: a :class:`~audiossl.errors.UserError` is re-raised as
    is (its message names the file or utterance); anything else becomes :class:`JobFailed`
    naming the task (``describe(task)``) with the job's traceback. Ctrl-C stops every job.
    """
    global _local_bar
    tasks = list(tasks)
    if num_jobs is not None and num_jobs < 1:
        raise ConfigError(f"the number of jobs must be >= 1, got {num_jobs}")
    bar = progress(range(total or 0), desc=desc, total=total, unit=unit) if show_progress and total else None
    try:
        if len(tasks) <= 1 or num_jobs == 1:
            _local_bar = bar
            try:
                return [function(task) for task in tasks]
            finally:
                _local_bar = None
        return _run_processes(function, tasks, num_jobs or len(tasks), bar, describe)
    finally:
        if bar is not None:
            bar.close()


def _run_processes(function: Callable, tasks: list, num_jobs: int, bar: Any, describe: Callable) -> list:
    context = mp.get_context("spawn")
    messages = context.Queue()
    threads = default_threads(min(num_jobs, len(tasks)))
    results: dict[int, Any] = {}
    pending = list(range(len(tasks)))
    running: dict[int, Any] = {}

    def start(number: int) -> None:
        process = context.Process(
            target=_job_main, args=(function, tasks[number], number, messages, threads), daemon=True
        )
        process.start()
        running[number] = process

    try:
        while pending or running:
            while pending and len(running) < num_jobs:
                start(pending.pop(0))
            try:
                kind, number, payload = messages.get(timeout=0.5)
            except queue.Empty:
                for number, process in list(running.items()):
                    # exit code 0: its last message is still on its way
                    if not process.is_alive() and process.exitcode != 0:
                        raise JobFailed(  # noqa: B904  (no exception to chain: the queue was merely empty)
                            f"job {describe(tasks[number])} died without a result (exit code {process.exitcode}; "
                            "out of memory?)"
                        )
                continue
            if kind == "progress":
                if bar is not None:
                    bar.update(payload)
            elif kind == "done":
                results[number] = payload
                running.pop(number).join()
            elif kind == "user-error":
                raise _rebuild_user_error(*payload)
            else:  # "error"
                raise JobFailed(f"job {describe(tasks[number])} failed:\n{payload}")
    except BaseException:
        _stop(running.values())
        raise
    return [results[number] for number in range(len(tasks))]


def _rebuild_user_error(module: str, name: str, text: str) -> UserError:
    """A job's user error in the parent: its own class when that takes a message, else UserError."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
        error = cls(text)
        if isinstance(error, UserError):
            return error
    except Exception:  # noqa: BLE001  (a class that cannot be rebuilt from its text)
        pass
    return UserError(text)


def _stop(processes: Iterable[Any]) -> None:
    """Terminate jobs still running and reap them."""
    processes = list(processes)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def _job_main(function: Callable, task: Any, number: int, messages: Any, threads: int) -> None:
    """A job process: run ``function(task)``, report its result or its failure to the parent."""
    global _progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    _progress_queue = messages
    try:
        torch = sys.modules.get("torch")  # imported by the job's own module, if it needs it
        if torch is not None:
            torch.set_num_threads(threads)
        result = function(task)
    except UserError as error:
        messages.put(("user-error", number, (type(error).__module__, type(error).__qualname__, str(error))))
        return
    except BaseException:  # noqa: BLE001  (reported to the parent with the traceback)
        messages.put(("error", number, traceback.format_exc()))
        return
    messages.put(("done", number, result))
