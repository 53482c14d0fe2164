"""``audiossl extract --shard I/N`` and ``--nj N``: parts extracted apart, merged into the one-process output.

Extraction already works in chunks of ``chunk_size`` utterances (Kaldi order), each embedded
as a unit. A shard (or a job) extracts a contiguous block of whole chunks into its own part dir,
an ordinary resumable extraction whose chunks keep their global numbers (``part-NNNNN``), so
they hold exactly the utterances and arrays of the same chunks of the unsharded run. The merge
moves each part's chunk files into the output (rewriting the absolute ark paths of Kaldi scp
lines), concatenates the done lists in shard order and writes the format's index and the
finished ``extract.json``: the same files the one-process extraction writes.

Layout: shard ``I/N`` of ``--out OUT`` is ``OUT/shard-I-of-N/`` (plus ``part.json``); the jobs
of one run are ``.job-J-of-K/`` inside the dir they merge into. ``audiossl extract-merge OUT``
merges the shards once all are finished.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from audiossl.data.kaldi import DataDir, read_table, write_table
from audiossl.data.shards import (
    Shard,
    check_parts,
    find_parts,
    fingerprint,
    part_meta,
    part_path,
    run_jobs,
    split_range,
)
from audiossl.embed.extract import (
    DONE_NAME,
    SETTINGS_NAME,
    ExtractResult,
    _prepare_output,
    extraction_settings,
    read_done,
)
from audiossl.embed.extract import (
    extract as extract_block,
)
from audiossl.embed.writers import create_writer
from audiossl.errors import DataError
from audiossl.fileio import atomic_write

PART = "part.json"


def extract(
    model: Any,
    data_dir: str | Path,
    out: str | Path,
    *,
    shard: Shard | str | None = None,
    num_jobs: int = 1,
    **options: Any,
) -> ExtractResult:
    """:func:`audiossl.embed.extract.extract` (same ``options``) sharded and/or in ``num_jobs`` processes.

    ``shard="I/N"`` extracts shard I of N only, into ``out/shard-I-of-N`` (:func:`merge_extract`
    merges the shards into ``out``); either way the merged output is the one-process output.
    """
    if Shard.parse(shard).whole and num_jobs == 1:
        return extract_block(model, data_dir, out, **options)
    return extract_sharded(model, data_dir, out, shard=shard, num_jobs=num_jobs, **options)


class _ExtractJob:
    """One block of utterances into one part dir (picklable: runs in a job process)."""

    def __init__(self, model: Any, data_dir: str, options: dict[str, Any]):
        self.model, self.data_dir, self.options = model, data_dir, options

    def __call__(self, task: tuple[range, str]) -> ExtractResult:
        block, out = task
        return extract_block(self.model, self.data_dir, out, block=block, **self.options)


def extract_sharded(
    model: Any,
    data_dir: str | Path,
    out: str | Path,
    *,
    shard: Shard | str | None = None,
    num_jobs: int = 1,
    **options: Any,
) -> ExtractResult:
    """Extract shard ``shard`` of ``data_dir`` with ``num_jobs`` processes (see the module doc)."""
    shard = Shard.parse(shard)
    out = Path(out)
    chunk_size = int(options.get("chunk_size", 64))
    ids = DataDir.load(data_dir).utterance_ids
    block = shard.range(len(ids), chunk_size)
    target = out if shard.whole else part_path(out, shard)
    if isinstance(model, (str, Path)) and Path(model).is_dir():
        from audiossl.models import latest_checkpoint

        newest = latest_checkpoint(model)  # every job and shard must read the same checkpoint
        model = newest if newest is not None else model
    model = str(model) if isinstance(model, Path) else model
    ranges = [r for r in split_range(block, max(1, num_jobs), chunk_size) if len(r)] or [block]
    job = _ExtractJob(model, str(data_dir), options)
    if len(ranges) == 1:
        result = job((ranges[0], str(target)))
    else:
        # the target records the run's settings first, so a rerun resumes its jobs (or sees it finished)
        settings = extraction_settings(
            model,
            data_dir,
            options.get("layer"),
            options.get("pooling"),
            options.get("format", "npy"),
            bool(options.get("bf16")),
            options.get("channel"),
        )
        if _prepare_output(target, settings, bool(options.get("overwrite"))):
            count = len(block)
            return ExtractResult(target / create_writer(settings["format"], target).index_name, count, count, 0, True)
        tasks = [(r, str(target / f".job-{j}-of-{len(ranges)}")) for j, r in enumerate(ranges)]
        results = run_jobs(
            job,
            tasks,
            num_jobs=num_jobs,
            desc="extract",
            total=len(block),
            unit="utt",
            describe=lambda task: f"utterances {task[0].start}..{task[0].stop - 1} of {data_dir}",
        )
        index = merge_parts([Path(path) for _, path in tasks], target)
        skipped = sum(r.skipped for r in results)
        result = ExtractResult(index, len(block), skipped, len(block) - skipped)
    if not shard.whole:
        settings = json.loads((target / SETTINGS_NAME).read_text())
        settings.pop("complete", None)
        meta = part_meta(shard, block, fingerprint(ids), **settings)
        with atomic_write(target / PART) as handle:
            json.dump(meta, handle, indent=1)
    return result


def merge_parts(parts: list[Path], target: Path) -> Path:
    """Move the chunks of finished extraction dirs ``parts`` (in order) into ``target``; write its index."""
    settings = None
    done: dict[str, list[str]] = {}
    for part in parts:
        part_settings = json.loads((part / SETTINGS_NAME).read_text())
        if not part_settings.get("complete"):
            raise DataError("unfinished extraction part: rerun it to finish", part)
        part_settings.pop("complete")
        settings = settings or part_settings
        writer = create_writer(settings["format"], part)
        (target / writer.folder).mkdir(parents=True, exist_ok=True)
        for chunk, names in read_done(part).items():
            if not names:
                continue
            if chunk in done:
                raise DataError(f"chunk {chunk} is in two parts", part)
            for path in writer.chunk_files(chunk, names):
                moved = target / writer.folder / path.name
                path.replace(moved)
                if moved.suffix == ".scp":  # Kaldi scp lines name their ark by absolute path
                    old = str((part / writer.folder).resolve())
                    new = str((target / writer.folder).resolve())
                    lines = [(utt, where.replace(old, new, 1)) for utt, where in read_table(moved).items()]
                    write_table(moved, lines)
            done[chunk] = names
    if settings is None:
        raise DataError("no extraction parts to merge", target)
    ordered = dict(sorted(done.items()))
    with atomic_write(target / DONE_NAME) as handle:
        handle.write("".join(" ".join([chunk, *names]) + "\n" for chunk, names in ordered.items()))
    index = create_writer(settings["format"], target).finish(ordered)
    with atomic_write(target / SETTINGS_NAME) as handle:
        json.dump({**settings, "complete": True}, handle, indent=1)
    for part in parts:
        shutil.rmtree(part)
    return index


def merge_extract(out: str | Path) -> Path:
    """Merge the finished shards ``OUT/shard-I-of-N`` of ``extract --shard`` into ``OUT``; returns the index."""
    out = Path(out)
    metas = []
    for path in find_parts(out):
        try:
            metas.append((str(path), json.loads((path / PART).read_text(encoding="utf-8"))))
        except FileNotFoundError:
            raise DataError(f"unfinished extraction shard (no {PART}): rerun that shard", path) from None
    ordered = [Path(location) for location, _ in check_parts(metas, f"the extraction in {out}")]
    for part in ordered:
        (part / PART).unlink()
    return merge_parts(ordered, out)
