"""``audiossl encoders``: inspect the registered encoder families and their presets."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Inspect the registered encoders (AST, BiMamba, Conformer) and their presets.", no_args_is_help=True
)


def format_count(count: int) -> str:
    """A parameter count for people: ``5390208`` -> ``5.4 M``."""
    return f"{count / 1e6:.1f} M"


@app.command("list")
def list_command() -> None:
    """Print every encoder family and preset with its number of parameters."""
    # lazy: audiossl.encoders pulls in torch; every `audiossl` start-up imports this module
    from audiossl.encoders import list_encoders

    rows = list_encoders()
    family_width = max([len("family"), *(len(family) for family, _, _ in rows)])
    preset_width = max([len("preset"), *(len(preset) for _, preset, _ in rows)])
    typer.echo(f"{'family':<{family_width}}  {'preset':<{preset_width}}  parameters")
    for family, preset, count in rows:
        typer.echo(f"{family:<{family_width}}  {preset:<{preset_width}}  {format_count(count):>10}")
