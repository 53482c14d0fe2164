"""``audiossl pr train | evaluate``: thin commands over the downstream trainer and :class:`~audiossl_pr.task.PRTask`.

Heavy imports (torch, the task) happen inside the commands, so mounting the plugin at every
``audiossl`` start-up stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from audiossl.cli import plugins as plugin_cli

app = typer.Typer(
    help="Phoneme recognition (SUPERB PR) on any upstream: a CTC head over phone transcripts, phone error rate.",
    no_args_is_help=True,
)


@app.command()
@plugin_cli.downstream_options()
def train(
    data: plugin_cli.DataArgument,
    out: plugin_cli.OutOption,
    upstream: plugin_cli.UpstreamOption,
    valid: plugin_cli.ValidOption = None,
    lexicon: Annotated[
        Path | None,
        typer.Option(
            help="Lexicon (word phone phone ...) mapping DATA/text to phones; default: DATA/text.phn, "
            "else DATA/text through DATA/lexicon.txt."
        ),
    ] = None,
    head: Annotated[
        str, typer.Option(help="CTC head: bilstm (default for small corpora), mlp, or linear (a per-frame probe).")
    ] = "bilstm",
    hidden: Annotated[int, typer.Option(help="Hidden size of the mlp / each bilstm direction.")] = 128,
    layers: Annotated[int, typer.Option(help="bilstm layers.")] = 2,
    dropout: Annotated[float, typer.Option(help="Dropout in the head.")] = 0.1,
    stride: Annotated[
        int,
        typer.Option(
            help="Stack this many upstream frames into one; 0 = from the upstream's frame rate (keep >= 40 frames/s)."
        ),
    ] = 0,
    spec_augment: Annotated[
        bool, typer.Option("--spec-augment/--no-spec-augment", help="SpecAugment masks on the head's input.")
    ] = True,
    settings: plugin_cli.DownstreamSettings = None,
    resume: plugin_cli.ResumeOption = False,
) -> None:
    """Train a CTC phone recogniser (phone inventory from DATA's transcripts) on an upstream into --out."""
    if lexicon is not None and not lexicon.is_file():
        raise typer.BadParameter(f"{lexicon} is not a file", param_hint="--lexicon")
    # lazy: audiossl_pr.task pulls in torch; every `audiossl` start-up imports this module
    from audiossl_pr.task import PRTask

    task = PRTask(
        lexicon=None if lexicon is None else str(lexicon),
        head=head,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        stride=stride,
        spec_augment=spec_augment,
    )
    plugin_cli.run_training(task, upstream, data, out, settings, valid=valid, resume=resume)


@app.command()
def evaluate(
    run_dir: plugin_cli.RunDirArgument,
    data: Annotated[
        Path, typer.Argument(help="Data dir to score: text.phn, or text (lexicon runs use the run's lexicon).")
    ],
    out: plugin_cli.OutOption,
    checkpoint: plugin_cli.CheckpointOption = None,
    device: plugin_cli.DeviceOption = None,
) -> None:
    """Recognise DATA's phones with a trained run (greedy CTC) into OUT/hyp.phn; print the PER."""
    plugin_cli.run_evaluation(run_dir, data, out, checkpoint=checkpoint, device=device)
