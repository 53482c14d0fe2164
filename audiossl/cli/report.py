"""``audiossl report``: a Markdown summary of an experiment dir (metrics tables, plots, audio)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.fileio import ensure_writable_file


def report(
    exp_dir: Annotated[Path, typer.Argument(help="Experiment dir to summarise (e.g. egs/synth/ssl1/exp).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Markdown file to write.")],
    title: Annotated[str | None, typer.Option(help="Report title (default: the dir's name).")] = None,
) -> None:
    """Write a Markdown report: every metrics.json as a table, every PNG shown, example audio linked."""
    ensure_writable_file(out)
    # lazy: the report module is not needed to start; every `audiossl` start-up imports this module
    from audiossl.report import write_report

    typer.echo(f"wrote {write_report(exp_dir, out, title)}")
