"""``audiossl interop``: the foreign checkpoint formats audiossl imports, and a check of one checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Import published checkpoints (torchaudio, Hugging Face, fairseq2/fairseq1).", no_args_is_help=True
)


@app.command("list")
def list_command() -> None:
    """List the checkpoint formats (the values of --format) with what each accepts."""
    # lazy: audiossl.interop pulls in torch; every `audiossl` start-up imports this module
    from audiossl.interop import IMPORTERS

    for name in IMPORTERS.names():
        typer.echo(f"{name:13s} {IMPORTERS.get(name).description}")


@app.command("inspect")
def inspect_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint file or directory.")],
    format: Annotated[
        str | None, typer.Option("--format", help="Force a format (see `audiossl interop list`); detected by default.")
    ] = None,
) -> None:
    """Import a checkpoint and print what audiossl sees: format, sample rate, width, layers, frame rate."""
    # lazy: audiossl.interop pulls in torch; every `audiossl` start-up imports this module
    from audiossl.interop import import_model

    model = import_model(path, format=format)
    typer.echo(
        f"format={model.source} model={type(model).__name__} sample_rate={model.sample_rate} dim={model.dim} "
        f"num_layers={model.num_layers} frame_rate={model.frame_rate:g} num_prefix_tokens={model.num_prefix_tokens}"
    )
