"""``audiossl er`` and ``audiossl cls``: train, evaluate, leave-speaker-out folds and cross-validation.

``cls`` classifies utterances by any ``utt2<label>`` table (``--label digit``, ``intent``, ``spk``,
``lang``, ``emo`` ...); ``er`` is the same classifier on ``utt2emo`` (its commands and options
are unchanged, so recipes keep working). The task, folds and trainer are imported inside the
commands (torch, the downstream trainer), so mounting the plugins at every ``audiossl``
start-up stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from audiossl.cli import plugins as plugin_cli
from audiossl.fileio import ensure_writable_dir
from audiossl_er import make_cls_task, make_task  # light: they import the torch-heavy task module on use

app = typer.Typer(
    help="Emotion recognition: pooled features + classifier; WA (overall accuracy) and UA (mean per-class recall).",
    no_args_is_help=True,
)

PoolingOption = Annotated[str, typer.Option("--pooling", help="Utterance pooling: mean, stats or attentive.")]
HiddenOption = Annotated[int, typer.Option("--hidden-dim", help="MLP hidden width; 0 = linear classifier.")]
WeightsOption = Annotated[
    bool, typer.Option("--class-weights/--no-class-weights", help="Weight the loss by inverse class frequency.")
]
DropoutOption = Annotated[float, typer.Option("--dropout", help="Dropout before the last linear layer.")]
NormalizeOption = Annotated[
    bool,
    typer.Option("--normalize/--no-normalize", help="Standardise pooled features with running statistics (no affine)."),
]
HeadOption = Annotated[
    str,
    typer.Option(
        "--head",
        help="trained (pooling + classifier, SGD) or linear-probe (standardised logistic regression on "
        "mean-pooled layers, C and layer chosen on dev data; closed form).",
    ),
]
ProbeOption = Annotated[
    bool,
    typer.Option(
        "--reference-probe/--no-reference-probe", help="Also fit the linear probe and report it beside the head."
    ),
]
LabelOption = Annotated[
    str, typer.Option("--label", "-l", help="Label table: utt2<LABEL> (digit, intent, kw, lang, emo; spk = utt2spk).")
]

CLASSIFIER_FLAGS = [
    plugin_cli.Flag("pooling", PoolingOption, "mean"),
    plugin_cli.Flag("hidden_dim", HiddenOption, 0),
    plugin_cli.Flag("class_weights", WeightsOption, False),
    plugin_cli.Flag("dropout", DropoutOption, 0.1),
    plugin_cli.Flag("normalize", NormalizeOption, True),
    plugin_cli.Flag("head", HeadOption, "trained"),
    plugin_cli.Flag("reference_probe", ProbeOption, True),
]


def _make_task(**options: Any) -> Any:
    return make_task(**options)


def _make_cls_task(**options: Any) -> Any:
    return make_cls_task(**options)


#: The classifier options train and cross-validate share; the command receives the task they make.
task_options = plugin_cli.option_group("task", CLASSIFIER_FLAGS, _make_task)
#: The same for ``cls``, with the label table first.
cls_task_options = plugin_cli.option_group(
    "task", [plugin_cli.Flag("label", LabelOption, ...), *CLASSIFIER_FLAGS], _make_cls_task
)
#: The trainer flags of cross-validate.
CV_FLAGS = ("mode", "max_steps", "lr", "batch_seconds", "seed", "device", "budget_minutes", "early_stopping")
NumFoldsOption = Annotated[
    int | None, typer.Option("--num-folds", help="Speaker groups (default: one speaker per fold).")
]


@app.command()
@task_options
@plugin_cli.downstream_options()
def train(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    valid: plugin_cli.ValidOption = None,
    task: Any = None,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train an emotion classifier on DATA (utt2emo) over an upstream (and the reference linear probe)."""
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@app.command()
def evaluate(
    run_dir: plugin_cli.RunDirArgument,
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
) -> None:
    """Score a trained run on DATA: WA, UA, per-class recall, report.txt, confusion.png, utt2emo_pred."""
    plugin_cli.run_evaluation(run_dir, data, out, checkpoint=checkpoint, device=device)


@app.command()
def folds(
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    num_folds: NumFoldsOption = None,
) -> None:
    """Write leave-speaker-out folds of DATA: OUT/fold<k>/train and OUT/fold<k>/test."""
    ensure_writable_dir(out)
    # lazy: folds cost ~10 ms to import; every `audiossl` start-up imports this module
    from audiossl_er.folds import leave_speaker_out_folds

    for fold_dir in leave_speaker_out_folds(data, out, num_folds):
        typer.echo(str(fold_dir))


@app.command("cross-validate")
@task_options
@plugin_cli.downstream_options(CV_FLAGS)
def cross_validate_command(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    num_folds: NumFoldsOption = None,
    task: Any = None,
    settings: plugin_cli.DownstreamSettings = None,
) -> None:
    """Leave-speaker-out cross-validation: train and evaluate every fold; print per-fold and mean WA and UA."""
    run_cross_validation(data, upstream, out, num_folds, task, settings)


def run_cross_validation(data: Path, upstream: str, out: Path, num_folds: int | None, task: Any, settings: Any) -> None:
    """Train and evaluate every leave-speaker-out fold; print per-fold and mean WA and UA (er and cls)."""
    ensure_writable_dir(out)
    # lazy: audiossl.downstream.trainer pulls in torch; every `audiossl` start-up imports this module
    from audiossl.downstream.trainer import evaluate_downstream, train_downstream
    from audiossl_er.folds import cross_validate

    def train_fold(train_dir: Path, run_dir: Path) -> Path:
        return train_downstream(task, upstream, train_dir, run_dir, settings).run_dir

    def evaluate_fold(run_dir: Path, test_dir: Path, eval_dir: Path) -> dict[str, float]:
        return evaluate_downstream(run_dir, test_dir, eval_dir, task=task, device=settings.device)

    summary = cross_validate(train_fold, evaluate_fold, data, out, num_folds)
    for name, metrics in summary["folds"].items():
        typer.echo(f"{name}  WA {metrics['WA']:.4f}  UA {metrics['UA']:.4f}")
    typer.echo(f"mean    WA {summary['mean']['WA']:.4f}  UA {summary['mean']['UA']:.4f}")
    typer.echo(f"wrote {out / 'summary.json'}")


# ----------------------------------------------------------------------------- ``audiossl cls``

cls_app = typer.Typer(
    help="Utterance classification over any utt2<label> (keyword spotting, intent, speaker or language id, "
    "emotion): pooled features + classifier beside a linear probe; WA and UA, confusion matrix.",
    no_args_is_help=True,
)


@cls_app.command("train")
@cls_task_options
@plugin_cli.downstream_options()
def cls_train(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    valid: plugin_cli.ValidOption = None,
    task: Any = None,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a classifier of DATA's utt2<LABEL> over an upstream (and the reference linear probe)."""
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@cls_app.command("evaluate")
def cls_evaluate(
    run_dir: plugin_cli.RunDirArgument,
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
) -> None:
    """Score a trained run on DATA: WA, UA, per-class recall, the probe's WA/UA, report.txt, confusion.png."""
    plugin_cli.run_evaluation(run_dir, data, out, checkpoint=checkpoint, device=device)


@cls_app.command("cross-validate")
@cls_task_options
@plugin_cli.downstream_options(CV_FLAGS)
def cls_cross_validate(
    data: plugin_cli.DataArgument,
    upstream: plugin_cli.UpstreamOption,
    out: plugin_cli.OutOption,
    num_folds: NumFoldsOption = None,
    task: Any = None,
    settings: plugin_cli.DownstreamSettings = None,
) -> None:
    """Leave-speaker-out cross-validation of the classifier: per-fold and mean WA and UA."""
    run_cross_validation(data, upstream, out, num_folds, task, settings)
