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
    from audiossl.superb.runner import Interrupted, collect_results, parse_upstream, run_superb

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
    try:
        outcome = run_superb(entries, task_data, out, settings, keep_going=not stop_on_error)
    except Interrupted as stop:
        typer.echo(f"interrupted: {stop}", err=True)
        raise typer.Exit(130) from None
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


CORPORA = (
    "speech-commands",
    "fluent-speech-commands",
    "voxceleb1",
    "iemocap",
    "librispeech",
    "quesst14",
    "voicebank-demand",
    "libri2mix",
)


@app.command("prepare")
def prepare_corpus(
    corpus: Annotated[str, typer.Argument(help=f"One of: {', '.join(CORPORA)}.")],
    source: Annotated[
        Path,
        typer.Argument(help="The unpacked corpus folder, in the layout its release unpacks to."),
    ],
    out_dir: Annotated[Path, typer.Argument(help="Where the data dirs go.")],
    data_config: Annotated[
        Path | None, typer.Option("--data-config", help="Add this task's entry to a data config (created if missing).")
    ] = None,
    test_set: Annotated[
        Path | None, typer.Option("--test-set", help="speech-commands: the separate test set folder (v0.01).")
    ] = None,
    iden_split: Annotated[Path | None, typer.Option("--iden-split", help="voxceleb1: iden_split.txt (sid).")] = None,
    trials: Annotated[Path | None, typer.Option("--trials", help="voxceleb1: veri_test2.txt (sv).")] = None,
    lexicon: Annotated[
        Path | None, typer.Option("--lexicon", help="librispeech: librispeech-lexicon.txt or CMUdict (pr).")
    ] = None,
    fold: Annotated[str, typer.Option("--fold", help="iemocap: the held-out session of the er entry.")] = "Ses01",
) -> None:
    """Data dirs of one of SUPERB's public corpora in its release layout (+ its data-config entry)."""
    if corpus not in CORPORA:
        raise ConfigError(f"unknown corpus {corpus!r}; known: {', '.join(CORPORA)}")
    ensure_writable_dir(out_dir, warn_existing=True)
    if data_config is not None:
        from audiossl.fileio import ensure_writable_file

        ensure_writable_file(data_config)
    from audiossl.superb import corpora

    out_dir = out_dir.resolve()
    entry: dict[str, dict] = {}
    if corpus == "speech-commands":
        parts = corpora.prepare_speech_commands(source, out_dir, test_set)
        entry["ks"] = {**{k: str(v) for k, v in parts.items()}, "label": "utt2kw"}
    elif corpus == "fluent-speech-commands":
        parts = corpora.prepare_fluent_speech_commands(source, out_dir)
        entry["ic"] = {**{k: str(v) for k, v in parts.items()}, "label": "utt2intent"}
    elif corpus == "voxceleb1":
        if iden_split is None and trials is None:
            raise ConfigError("voxceleb1 needs --iden-split (sid) and/or --trials (sv)")
        if iden_split is not None:
            parts = corpora.prepare_voxceleb1_sid(source, out_dir / "sid", iden_split)
            entry["sid"] = {**{k: str(v) for k, v in parts.items()}, "label": "utt2spk"}
        if trials is not None:
            from audiossl.data.corpora.voxceleb import prepare_voxceleb

            prepare_voxceleb([source], out_dir / "sv", trials)  # dev: training speakers; test: the trials' speakers
            entry["sv"] = {
                "train": str(out_dir / "sv" / "dev"),
                "test": str(out_dir / "sv" / "test"),
                "label": "utt2spk",
            }
    elif corpus == "iemocap":
        from audiossl.data.corpora.iemocap import prepare_iemocap
        from audiossl.data.folds import write_group_folds

        prepare_iemocap(source, out_dir / "all")
        written = {p.name: p for p in write_group_folds(out_dir / "all", out_dir / "folds", "session")}
        if fold not in written:
            raise ConfigError(f"--fold {fold!r} is not a session of this corpus ({', '.join(sorted(written))})")
        entry["er"] = {"train": str(written[fold] / "train"), "test": str(written[fold] / "test"), "label": "utt2emo"}
    elif corpus == "librispeech":
        from audiossl.data.corpora.librispeech import prepare_librispeech

        names = {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"}
        prepare_librispeech(source, out_dir, list(names.values()))
        dirs = {part: str(out_dir / name.replace("-", "_")) for part, name in names.items()}
        entry["asr"] = {**dirs, "label": "text"}
        if lexicon is not None:
            for part, path in dirs.items():
                _, dropped = corpora.add_phones(path, lexicon)
                typer.echo(f"{part}: text.phn written; {dropped} utterances with out-of-lexicon words dropped")
            entry["pr"] = {**dirs, "label": "text.phn"}
    elif corpus == "quesst14":
        made = corpora.prepare_quesst14(source, out_dir)
        docs = str(made["docs"])
        entry["qbe"] = {
            "dev": docs,
            "test": docs,
            "dev_queries": str(made["dev_queries"]),
            "test_queries": str(made["eval_queries"]),
        }
    elif corpus == "voicebank-demand":
        parts = corpora.prepare_voicebank_demand(source, out_dir)
        entry["se"] = {k: str(v) for k, v in parts.items()}
    else:
        parts = corpora.prepare_libri2mix(source, out_dir)
        entry["ss"] = {k: str(v) for k, v in parts.items() if k in ("train", "dev", "test")}
    for task, dirs in entry.items():
        typer.echo(f"{task}: " + ", ".join(f"{k}={v}" for k, v in dirs.items()))
    if data_config is not None:
        typer.echo(f"wrote {corpora.add_to_data_config(data_config, entry)}")
