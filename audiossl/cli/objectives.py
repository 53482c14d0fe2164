"""``audiossl objectives``: the self-supervised objectives that can train any encoder."""

from __future__ import annotations

import typer

app = typer.Typer(help="Self-supervised objectives (any objective trains any encoder).", no_args_is_help=True)


@app.command("list")
def list_command() -> None:
    """List every registered objective with a one-line description."""
    # lazy: audiossl.objectives pulls in torch; every `audiossl` start-up imports this module
    from audiossl.objectives import list_objectives

    for name, description in list_objectives():
        typer.echo(f"{name:10s} {description}")
