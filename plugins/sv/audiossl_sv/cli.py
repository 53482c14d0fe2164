"""``audiossl sv``: train a speaker head, embed, score trials, evaluate, make trial lists.

Each command is a thin wrapper over a library function:

* ``train TRAIN -u UPSTREAM -o RUN``: :func:`~audiossl.downstream.trainer.train_downstream` with
  :class:`~audiossl_sv.task.SVTask`; the trainer's flags are every plugin's (``--config``, ``--set``),
  the task's come from ``--task-config`` YAML and ``--task-set margin=0.3``;
* ``embed DATA (--run RUN | -u UPSTREAM) -o xvector.ark``: :func:`~audiossl_sv.evaluation.embed_data_dir`;
* ``score TRIALS --embeddings ARK -o SCORES``: :func:`~audiossl_sv.scoring.score_trials` and the metrics;
* ``evaluate DATA (--run RUN | -u UPSTREAM) -o OUT``: embed, score, EER/minDCF, DET plot. With a run,
  the trained head, and beside it the ``linear-probe`` reference (:mod:`audiossl_sv.probe`: cosine
  of standardised mean-pooled frozen features, no training); without a run, that probe alone
  (``--head linear-probe``, the default) or the raw cosine of mean-pooled features (``--head mean``);
* ``make-trials DATA -o TRIALS``: :func:`~audiossl_sv.trials.make_trials`.

The library modules are imported inside the commands (they pull in torch and the downstream
trainer), so mounting the plugin at every ``audiossl`` start-up stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.config import apply_overrides, from_dict, load_yaml
from audiossl.fileio import ensure_writable_dir, ensure_writable_file

app = typer.Typer(
    name="sv",
    help="Speaker verification: AAM-softmax speaker head, cosine scoring (AS-norm), EER and minDCF, DET plots.",
    no_args_is_help=True,
)


def _echo_metrics(metrics: dict[str, Any]) -> None:
    width = max((len(name) for name in metrics), default=0)
    for name, value in metrics.items():
        typer.echo(f"{name:<{width}}  {value:.4f}" if isinstance(value, float) else f"{name:<{width}}  {value}")


RunOption = Annotated[Path | None, typer.Option("--run", help="Trained sv run dir (its newest checkpoint).")]
UpstreamOption = Annotated[
    str | None,
    typer.Option(
        "--upstream",
        "-u",
        help="Without --run: a checkpoint (audiossl or imported), a pretraining run dir, random:<ckpt>, or the "
        "baseline fbank-raw[:RATE[:BINS]] (log mel energies; fbank[:RATE[:BINS]] normalises each utterance, "
        "which leaves nothing to pool: it is only for sv train).",
    ),
]
LayerOption = Annotated[
    int | None, typer.Option("--layer", help="Without --run: mean-pool this encoder layer instead of the layer mix.")
]


@dataclass(frozen=True)
class Source:
    """What embed and evaluate embed with: a trained run, or an upstream (and a layer) for the frozen baseline."""

    run: Path | None
    upstream: str | None
    layer: int | None


def _source(run: Path | None = None, upstream: str | None = None, layer: int | None = None) -> Source:
    if (run is None) == (upstream is None):
        raise typer.BadParameter("give exactly one of --run RUN_DIR and --upstream SPEC", param_hint="--run/--upstream")
    return Source(run, upstream, layer)


#: --run / --upstream / --layer of embed and evaluate; the command receives the checked Source.
source_options = plugin_cli.option_group(
    "source",
    [
        plugin_cli.Flag("run", RunOption),
        plugin_cli.Flag("upstream", UpstreamOption),
        plugin_cli.Flag("layer", LayerOption),
    ],
    _source,
)


@app.command()
@plugin_cli.downstream_options(
    ("mode", "freeze_steps", "max_steps", "lr", "upstream_lr", "batch_seconds", "max_utt_seconds", "seed", "device")
)
def train(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    valid: Annotated[
        Path | None, typer.Option("--valid", help="Validation data dir (other utterances of the training speakers).")
    ] = None,
    settings: plugin_cli.DownstreamSettings = None,
    task_config: Annotated[
        Path | None, typer.Option("--task-config", help="YAML of the sv task (head, AAM-softmax, scoring).")
    ] = None,
    task_sets: Annotated[
        list[str] | None,
        typer.Option("--task-set", help="Override a task field: margin=0.3, embedding_dim=128 (repeatable)."),
    ] = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a speaker head (attentive stats pooling, AAM-softmax) on an upstream's layer mix."""
    # lazy: audiossl_sv.task pulls in torch; every `audiossl` start-up imports this module
    from audiossl_sv.task import SVTask, SVTaskConfig

    task = load_yaml(SVTaskConfig, task_config) if task_config is not None else SVTaskConfig()
    task = apply_overrides(task, list(task_sets or []))
    plugin_cli.run_training(SVTask(task), upstream, data, out, settings, valid=valid, resume=resume)


@app.command()
@source_options
def embed(
    data_dir: Annotated[Path, typer.Argument(help="Data dir whose utterances are embedded.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Kaldi archive of embeddings to write (xvector.ark).")],
    source: Source = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = "auto",
) -> None:
    """Embed every utterance of a data dir: a trained head's embeddings, or mean-pooled upstream features."""
    ensure_writable_file(out)
    # lazy: audiossl.downstream.trainer pulls in torch; every `audiossl` start-up imports this module
    from audiossl.downstream.trainer import load_downstream, resolve_device
    from audiossl.downstream.upstream import load_upstream
    from audiossl_sv.evaluation import embed_data_dir
    from audiossl_sv.scoring import save_embeddings

    if source.run is not None:
        model = load_downstream(source.run, device=device)
        table = embed_data_dir(model.upstream, data_dir, head=model.head, layer=source.layer)
    else:
        upstream = load_upstream(source.upstream).to(resolve_device(device))
        table = embed_data_dir(upstream, data_dir, layer=source.layer)
    save_embeddings(out, table)
    typer.echo(f"wrote {len(table)} embeddings of size {len(next(iter(table.values())))} to {out}")


@app.command()
def score(
    trials: Annotated[Path, typer.Argument(help="Trials file: '<label 1/0> <enroll> <test>' lines.")],
    embeddings: Annotated[Path, typer.Option("--embeddings", "-e", help="Kaldi archive of the trials' embeddings.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores file to write ('<label> <enroll> <test> <score>').")],
    mean_from: Annotated[
        Path | None, typer.Option("--mean-from", help="Archive whose mean embedding is subtracted (training data).")
    ] = None,
    cohort: Annotated[Path | None, typer.Option("--cohort", help="Cohort embeddings (archive): AS-norm.")] = None,
    top_n: Annotated[int, typer.Option("--top-n", help="AS-norm: closest cohort embeddings per side.")] = 300,
    det: Annotated[Path | None, typer.Option("--det", help="Also write a DET plot (PNG) here.")] = None,
) -> None:
    """Cosine-score a trials file (optional mean subtraction and AS-norm); print EER and minDCF."""
    ensure_writable_file(out)
    if det is not None:
        ensure_writable_file(det)
    import numpy as np

    # lazy: audiossl_sv.scoring pulls in torch; every `audiossl` start-up imports this module
    from audiossl_sv.metrics import plot_det, verification_metrics
    from audiossl_sv.scoring import load_embeddings, score_trials, write_scores
    from audiossl_sv.trials import read_trials

    table = load_embeddings(embeddings)
    trial_list = read_trials(trials, known=table)
    mean = np.stack(list(load_embeddings(mean_from).values())).mean(axis=0) if mean_from is not None else None
    cohort_matrix = np.stack(list(load_embeddings(cohort).values())) if cohort is not None else None
    scores = score_trials(table, trial_list, mean=mean, cohort=cohort_matrix, top_n=top_n)
    write_scores(out, trial_list, scores)
    labels = np.array([t.label for t in trial_list])
    if det is not None:
        plot_det({trials.name: (scores, labels)}, det)
    _echo_metrics(verification_metrics(scores, labels))


@app.command()
@source_options
def evaluate(
    data_dir: Annotated[Path, typer.Argument(help="Evaluation data dir (unseen speakers).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dir: scores, det.png, metrics.json...")],
    source: Source = None,
    trials: Annotated[
        Path | None, typer.Option("--trials", help="Trials file; default DATA/trials, else a generated list.")
    ] = None,
    num_trials: Annotated[int | None, typer.Option("--num-trials", help="Size of a generated trial list.")] = None,
    score_norm: Annotated[
        str | None, typer.Option("--score-norm", help="none, mean, asnorm or mean+asnorm (default: the run's).")
    ] = None,
    cohort_dir: Annotated[
        Path | None, typer.Option("--cohort-dir", help="Without --run: data dir for the mean and the AS-norm cohort.")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="With --run: this checkpoint.")] = None,
    head: Annotated[
        str,
        typer.Option(
            "--head",
            help="Without --run: linear-probe (cosine of standardised mean-pooled features, statistics from "
            "--cohort-dir, else from DATA) or mean (raw cosine of mean-pooled features).",
        ),
    ] = "linear-probe",
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            help="With --run: also score the linear-probe reference on the run's frozen upstream (statistics from "
            "the run's training data), into OUT/linear-probe, reported beside the trained head.",
        ),
    ] = True,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...")] = "auto",
) -> None:
    """Embed, cosine-score the trials, report EER and minDCF (p_target 0.01, 0.05) with a DET plot.

    With --run the trained head is scored, and beside it the linear-probe reference (no training).
    With --upstream only the frozen features are scored (--head linear-probe or mean).
    """
    ensure_writable_dir(out)
    # lazy: audiossl.downstream.trainer pulls in torch; every `audiossl` start-up imports this module
    from audiossl.downstream.trainer import read_run_info
    from audiossl_sv.evaluation import evaluate_frozen
    from audiossl_sv.probe import evaluate_probe
    from audiossl_sv.task import SVTask, SVTaskConfig

    run, upstream, layer = source.run, source.upstream, source.layer
    changes: dict[str, Any] = {}
    if trials is not None:
        changes["trials"] = str(trials)
    if num_trials is not None:
        changes["num_trials"] = num_trials
    if score_norm is not None:
        changes["score_norm"] = score_norm
    if head not in HEADS:
        raise typer.BadParameter(f"choose one of {', '.join(HEADS)}", param_hint="--head")
    if run is not None:
        if layer is not None or cohort_dir is not None:
            raise typer.BadParameter("--layer and --cohort-dir are for the frozen baseline (--upstream)")
        info = read_run_info(run)
        task = SVTask(from_dict(SVTaskConfig, {**info.get("task_options", {}), **changes}))
        metrics = plugin_cli.run_evaluation(run, data_dir, out, task=task, checkpoint=checkpoint, device=device)
        if probe:
            _probe_beside_run(info, data_dir, out, task.config, metrics, device)
        return
    config = from_dict(SVTaskConfig, changes)
    if head == "mean":
        metrics = evaluate_frozen(upstream, data_dir, out, config, layer=layer, cohort_dir=cohort_dir, device=device)
    else:
        metrics, _ = evaluate_probe(upstream, data_dir, out, config, layer=layer, stats_dir=cohort_dir, device=device)
    _echo_metrics(metrics)
    typer.echo(f"wrote {out / 'metrics.json'}")


#: Frozen-feature scorings of ``sv evaluate --upstream``.
HEADS = ("linear-probe", "mean")


def _probe_beside_run(
    info: dict[str, Any], data_dir: Path, out: Path, config: Any, metrics: dict[str, Any], device: str
) -> None:
    """Score the linear probe on the run's frozen upstream with the same trials; add it to OUT/metrics.json."""
    import dataclasses
    import json

    from audiossl.fileio import atomic_write
    from audiossl_sv.probe import PROBE_NAME, evaluate_probe

    trials = out / "trials" if config.trials is None and (out / "trials").is_file() else config.trials
    config = dataclasses.replace(config, trials=None if trials is None else str(trials))
    probe_out = out / PROBE_NAME
    probe_metrics, probe_report = evaluate_probe(
        info["upstream"],
        data_dir,
        probe_out,
        config,
        stats_dir=info.get("train_dir"),
        device=device,
        seed=int(info.get("config", {}).get("seed", 0)),
    )
    report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    report[PROBE_NAME] = {key: probe_report[key] for key in ("metrics", "upstream", "statistics_from", "baseline")}
    with atomic_write(out / "metrics.json") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    typer.echo(f"{PROBE_NAME} (no training: {probe_report['baseline']}, upstream {probe_report['upstream']}):")
    _echo_metrics(probe_metrics)
    typer.echo(
        f"trained head EER {metrics['eer_percent']:.2f}% vs {PROBE_NAME} EER {probe_metrics['eer_percent']:.2f}%; "
        f"wrote {probe_out}"
    )


@app.command("make-trials")
def make_trials_command(
    data_dir: Annotated[Path, typer.Argument(help="Data dir with utt2spk.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Trials file to write.")],
    num_trials: Annotated[
        int | None, typer.Option("--num-trials", help="Total trials (half target); default: every target pair.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw; the same seed gives the same list.")] = 0,
) -> None:
    """Write a balanced trial list (target / non-target) drawn from a data dir's speakers."""
    ensure_writable_file(out)
    # lazy: audiossl_sv.trials pulls in torch; every `audiossl` start-up imports this module
    from audiossl_sv.trials import make_trials, write_trials

    trials = make_trials(data_dir, num_trials=num_trials, seed=seed)
    write_trials(out, trials)
    targets = sum(t.label for t in trials)
    typer.echo(f"wrote {len(trials)} trials ({targets} target, {len(trials) - targets} non-target) to {out}")
