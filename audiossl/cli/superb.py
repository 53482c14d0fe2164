"""``audiossl superb``: every (upstream, task) pair of the SUPERB protocol, one leaderboard.

``audiossl superb -u A -u B --tasks ks,sid,er,asr,pr,sv,qbe,se,ss --data-config FILE -o DIR``
trains and scores every pair with the same budget and seed (resumable per pair), then writes
the leaderboard. ``audiossl superb prepare-synth`` / ``prepare-fsdd`` write data configs that
need nothing downloaded; ``audiossl superb leaderboard DIR`` redraws the tables and plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli.options import ConfigOption, SetOption
from audiossl.errors import ConfigError
from audiossl.fileio import ensure_writable_dir

app = typer.Typer(
    help="SUPERB: train and score every (upstream, task) pair alike; Markdown/CSV leaderboard, SUPERB score, plots.",
    invoke_without_command=True,
    no_args_is_help=True,
)

UpstreamsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--upstream",
        "-u",
        help="Upstream to evaluate (repeat): [NAME=]SPEC where SPEC is a checkpoint or run dir, an imported "
        "checkpoint, random:<checkpoint> or fbank[-raw][:RATE[:BINS]].",
    ),
]
TasksOption = Annotated[
    str | None, typer.Option("--tasks", help="Comma-separated tasks (default: every task of the data config).")
]
DataConfigOption = Annotated[
    Path | None, typer.Option("--data-config", help="YAML: task -> train/dev/test dirs + label file.")
]
OutDirOption = Annotated[Path | None, typer.Option("--out", "-o", help="Output dir (resumable).")]


@app.callback()
def superb(
    ctx: typer.Context,
    upstream: UpstreamsOption = None,
    tasks: TasksOption = None,
    data_config: DataConfigOption = None,
    out: OutDirOption = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps of every trained pair.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate of every head.")] = None,
    batch_seconds: Annotated[float | None, typer.Option("--batch-seconds", help="Padded seconds per batch.")] = None,
    budget_minutes: Annotated[
        float | None, typer.Option("--budget-minutes", help="Wall-clock budget of every trained pair.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every pair (weights, batch order).")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda ...")] = None,
    floor: Annotated[
        str | None,
        typer.Option("--floor", help="Upstream name scoring 0 in the SUPERB score (default: the first fbank)."),
    ] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    stop_on_error: Annotated[
        bool, typer.Option("--stop-on-error", help="Stop at the first failing pair (default: record it and go on).")
    ] = False,
) -> None:
    """Train and score every (upstream, task) pair with one budget and seed; write the leaderboard."""
    if ctx.invoked_subcommand is not None:
        return
    if not upstream or data_config is None or out is None:
        raise ConfigError("audiossl superb needs --upstream (one or more), --data-config and --out")
    ensure_writable_dir(out)
    # lazy: the runner pulls in torch and the trainer; every `audiossl` start-up imports this module
    from audiossl.cli.options import downstream_config
    from audiossl.superb.dataconfig import load_data_config
    from audiossl.superb.leaderboard import default_floor, write_leaderboard
    from audiossl.superb.runner import collect_results, parse_upstream, run_superb

    entries = [parse_upstream(text) for text in upstream]
    wanted = None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]
    task_data = load_data_config(data_config, wanted)
    settings = downstream_config(
        config,
        sets,
        max_steps=max_steps,
        lr=lr,
        batch_seconds=batch_seconds,
        budget_minutes=budget_minutes,
        seed=seed,
        device=device,
    )
    floor_name = floor or default_floor([(e.name, e.spec) for e in entries])
    if floor is not None and floor not in [e.name for e in entries]:
        raise ConfigError(f"--floor {floor!r} is not one of the upstreams ({', '.join(e.name for e in entries)})")
    outcome = run_superb(entries, task_data, out, settings, keep_going=not stop_on_error)
    names = [e.name for e in entries]
    results = [r for r in collect_results(out) if r.upstream in names and r.task in task_data]
    text = write_leaderboard(results, out, floor_name, names) if results else "no finished pair yet\n"
    typer.echo(text)
    typer.echo(
        f"{len(outcome.finished)} pairs run, {len(outcome.skipped)} finished before (skipped), "
        f"{len(outcome.failed)} failed; wrote {out / 'leaderboard.md'}, leaderboard.csv, leaderboard.png, "
        "layer_weights.png"
    )
    for upstream_name, task, error in outcome.failed:
        typer.echo(f"FAILED {upstream_name}/{task}: {error}", err=True)
    if outcome.failed:
        raise typer.Exit(1)


@app.command("leaderboard")
def leaderboard(
    run_dir: Annotated[Path, typer.Argument(help="Output dir of `audiossl superb`.")],
    floor: Annotated[
        str | None, typer.Option("--floor", help="Upstream name scoring 0 (default: the first fbank).")
    ] = None,
) -> None:
    """Rewrite the leaderboard (Markdown, CSV, PNG) and the layer-weight plot from the finished pairs of RUN_DIR."""
    ensure_writable_dir(run_dir)
    from audiossl.superb.leaderboard import default_floor, write_leaderboard
    from audiossl.superb.runner import collect_results

    results = collect_results(run_dir)
    pairs = list(dict.fromkeys((r.upstream, r.spec) for r in results))
    typer.echo(write_leaderboard(results, run_dir, floor or default_floor(pairs), [p[0] for p in pairs]))


@app.command("prepare-synth")
def prepare_synth(
    out_dir: Annotated[Path, typer.Argument(help="Where the data dirs and OUT_DIR/superb.yaml go.")],
    speakers: Annotated[int, typer.Option(help="Synthetic speakers (at least 4).")] = 8,
    utts_per_speaker: Annotated[int, typer.Option(help="Utterances per speaker.")] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the corpus and the splits.")] = 0,
    sample_rate: Annotated[int, typer.Option(help="Sample rate (Hz).")] = 16000,
    enhance: Annotated[
        bool, typer.Option("--enhance/--no-enhance", help="Make se pairs and ss mixtures (enhance plugin).")
    ] = True,
) -> None:
    """Every SUPERB task's train/dev/test dirs from the embedded synthetic corpus, and their data config."""
    ensure_writable_dir(out_dir, warn_existing=True)
    from audiossl.superb.datasets import prepare_synth as prepare

    path = prepare(
        out_dir,
        speakers=speakers,
        utts_per_speaker=utts_per_speaker,
        seed=seed,
        sample_rate=sample_rate,
        enhance=enhance,
    )
    typer.echo(f"wrote {path}")


@app.command("prepare-fsdd")
def prepare_fsdd(
    recordings: Annotated[Path, typer.Argument(help="FSDD recordings folder ({digit}_{speaker}_{take}.wav).")],
    out_dir: Annotated[Path, typer.Argument(help="Where the data dirs and OUT_DIR/superb.yaml go.")],
    seed: Annotated[int, typer.Option(help="Seed of the dev split.")] = 0,
) -> None:
    """KS-like digits, SID and digit ASR data dirs from FSDD, and their data config."""
    ensure_writable_dir(out_dir, warn_existing=True)
    from audiossl.superb.datasets import prepare_fsdd as prepare

    typer.echo(f"wrote {prepare(recordings, out_dir, seed=seed)}")
