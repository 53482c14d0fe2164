"""A Markdown report of an experiment dir: metrics tables, plots and audio, found by walking it.

Recipes end with ``audiossl report EXP -o EXP/report.md``. The report does not know the
plugins: every ``metrics.json`` becomes a table of its scalar values (nested keys dotted,
lists left out), every PNG is shown, every ``.wav`` under an ``example`` dir is linked, and
pretraining runs (a ``train.jsonl``) get their first and last loss. Sections follow the
experiment's top-level dirs, pretraining first; paths are relative to the report, so the
report and its experiment dir can move together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audiossl.errors import DataError
from audiossl.fileio import atomic_write

#: Top-level dirs shown first, in this order; the others follow alphabetically.
ORDER = ("ssl", "pretrain", "asr", "sv", "er", "vc", "diarization")
#: Dirs never walked: per-utterance outputs and checkpoints.
SKIP = {"tensorboard", "wav", "converted", "resynthesis", "sources", "asr", "logs", ".done"}
MAX_PNGS_PER_SECTION = 12


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Scalars of a JSON value with dotted keys; lists and long or path-like strings are left out."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, bool | int | float):
        out[prefix] = value
    elif isinstance(value, str) and len(value) <= 40 and "/" not in value:
        out[prefix] = value
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` in sorted order, without the :data:`SKIP` dirs below it."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP)
        for name in sorted(filenames):
            yield here / name


def _section_dirs(exp_dir: Path) -> list[Path]:
    dirs = [d for d in exp_dir.iterdir() if d.is_dir() and d.name not in {"logs", ".done"}]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(dirs, key=lambda d: (rank.get(d.name, len(ORDER)), d.name))


def _losses(path: Path) -> tuple[int, float, int, float] | None:
    # lazy: audiossl.engine pulls in torch; only the loss summary needs it
    from audiossl.engine import read_records

    try:
        records = [r for r in read_records(path, "train") if "loss" in r]
    except (OSError, ValueError):
        return None
    if not records:
        return None
    return records[0]["step"], records[0]["loss"], records[-1]["step"], records[-1]["loss"]


def section(directory: Path, report_dir: Path) -> list[str]:
    """Markdown lines for one top-level experiment dir (empty when it holds nothing to show)."""
    lines: list[str] = []
    pngs: list[Path] = []
    for path in _walk(directory):
        rel = os.path.relpath(path, report_dir)
        where = path.parent.relative_to(directory.parent).as_posix()
        if path.name == "metrics.json":
            try:
                values = flatten(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as error:
                lines += [f"*{where}/metrics.json could not be read: {error}*", ""]
                continue
            if values:
                lines += [f"**{where}** ([metrics.json]({rel}))", "", "| metric | value |", "|---|---|"]
                lines += [f"| {key} | {_fmt(value)} |" for key, value in values.items()]
                lines.append("")
        elif path.name == "train.jsonl":
            losses = _losses(path)
            if losses:
                first_step, first, last_step, last = losses
                lines += [f"**{where}**: loss {first:.4g} at step {first_step} -> {last:.4g} at step {last_step}", ""]
        elif path.suffix == ".png":
            pngs.append(path)
        elif path.suffix == ".wav" and "example" in path.parts:
            lines += [f'Audio: [{path.name}]({rel}) <audio controls src="{rel}"></audio>', ""]
    for path in pngs[:MAX_PNGS_PER_SECTION]:
        where = path.relative_to(directory.parent).as_posix()
        lines += [f"![{where}]({os.path.relpath(path, report_dir)})", ""]
    if len(pngs) > MAX_PNGS_PER_SECTION:
        lines += [f"*{len(pngs) - MAX_PNGS_PER_SECTION} more plots under {directory.name}/*", ""]
    return lines


def write_report(exp_dir: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Write the Markdown report of ``exp_dir`` to ``out`` (atomically) and return its path."""
    exp_dir, out = Path(exp_dir), Path(out)
    if not exp_dir.is_dir():
        raise DataError("experiment dir not found", exp_dir)
    report_dir = out.parent.resolve()
    lines = [f"# {title or exp_dir.name}", "", f"Experiment dir: `{exp_dir}`", ""]
    for path in sorted(exp_dir.glob("*.png")):
        lines += [f"![{path.name}]({os.path.relpath(path.resolve(), report_dir)})", ""]
    shown = 0
    for directory in _section_dirs(exp_dir):
        body = section(directory.resolve(), report_dir)
        if body:
            lines += [f"## {directory.name}", "", *body]
            shown += 1
    if shown == 0:
        lines += ["Nothing to report yet: no metrics.json, train.jsonl or PNG under this dir.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as handle:
        handle.write("\n".join(lines).rstrip() + "\n")
    return out
