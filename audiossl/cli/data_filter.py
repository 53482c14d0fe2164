"""``audiossl data filter``: a new data dir without the utterances a list names or validation rejects."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_dir

log = logging.getLogger("audiossl.data")

#: Dropped ids printed on the console (all of them are in OUT/dropped.txt).
SHOWN = 20


def filter_dir(
    data_dir: Annotated[Path, typer.Argument(help="Kaldi data dir to filter (never modified).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new data dir (must differ from DATA_DIR).")],
    exclude: Annotated[
        list[Path] | None,
        typer.Option(
            "--exclude",
            help="File of utterance ids to drop, one per line (first field; '#' comments and blank lines skipped); "
            "a recording id drops all its segments. Repeatable. OUT/dropped.txt of an earlier filter works too.",
        ),
    ] = None,
    drop_bad: Annotated[
        bool,
        typer.Option(
            "--drop-bad",
            help="Also drop every utterance `audiossl data validate` finds a problem with (unreadable or truncated "
            "audio, bad or missing table lines, segments past the end, ...).",
        ),
    ] = False,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            "--sample-rate", min=1, help="With --drop-bad: the rate the data will be used at (see `data validate`)."
        ),
    ] = None,
    no_audio: Annotated[
        bool, typer.Option("--no-audio", help="With --drop-bad: check the tables only, do not read the audio.")
    ] = False,
    nj: Annotated[int, typer.Option("--nj", min=1, help="With --drop-bad: processes reading the audio.")] = 1,
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown",
            help="Warn about (instead of refusing) list lines naming ids the data dir does not have.",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT when it already holds files.")] = False,
) -> None:
    """Write a copy of a data dir without some utterances: every per-utterance table filtered alike.

    wav.scp, segments, text, text.*, utt2*, reco2*, trials and spk2* lose the dropped utterances
    (spk2utt is regenerated); other files are copied, folders are left where they are. OUT is
    written beside its final place and renamed in; OUT/dropped.txt lists each dropped utterance
    with the reason (the list's file and line, or the validation problem).
    """
    if not exclude and not drop_bad:
        raise typer.BadParameter("give --exclude LIST and/or --drop-bad: nothing to drop", param_hint="--exclude")
    ensure_writable_dir(out)  # the output first, like every writing command
    # lazy: data.validate pulls in torch; every `audiossl` start-up imports this module
    from audiossl.data.filter import (
        DROPPED_NAME,
        Structure,
        bad_utterances,
        check_output,
        filter_data_dir,
        read_id_list,
    )

    check_output(data_dir, out, force)  # before any work: OUT == DATA_DIR, OUT not empty, DATA_DIR missing
    structure = Structure.read(data_dir)
    drop: dict[str, str] = {}
    for path in exclude or []:
        named, warnings = read_id_list(path, structure, allow_unknown=allow_unknown)
        for warning in warnings:
            log.warning("%s", warning)
        for utt, where in named.items():
            drop.setdefault(utt, f"listed in {where}")
    if drop_bad:
        from audiossl.data.validate import validate_data_dir

        problems = validate_data_dir(data_dir, check_audio=not no_audio, resample_to=sample_rate, num_jobs=nj)
        bad, other = bad_utterances(problems, structure)
        for utt, problem in bad.items():
            drop.setdefault(utt, problem)
        for problem in other:
            log.warning("left as is (not about one utterance): %s", problem)
    report = filter_data_dir(data_dir, out, drop, replace=force)
    shown = list(report.dropped.items())[:SHOWN]
    for utt, reason in shown:
        typer.echo(f"dropped {utt}: {reason}")
    if len(report.dropped) > len(shown):
        typer.echo(f"... and {len(report.dropped) - len(shown)} more")
    for name, (before, after) in report.tables.items():
        if before != after:
            typer.echo(f"{name}: {before} -> {after} lines")
    if report.copied:
        typer.echo(f"copied unchanged: {', '.join(report.copied)}")
    if report.not_copied:
        typer.echo(f"not copied (folders stay in {data_dir}): {', '.join(report.not_copied)}")
    typer.echo(f"dropped {len(report.dropped)} utterance(s), kept {report.kept} -> {out} (list: {out / DROPPED_NAME})")
    if report.kept == 0:
        log.warning("%s has no utterances left", out)


def register_filter(app: typer.Typer) -> None:
    """Mount the command as ``audiossl data filter``."""
    app.command("filter")(filter_dir)
