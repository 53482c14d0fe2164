"""``audiossl objectives``: the self-supervised objectives that can train any encoder, and their presets."""

from __future__ import annotations

import typer

app = typer.Typer(help="Self-supervised objectives (any objective trains any encoder).", no_args_is_help=True)


def presets_by_objective() -> dict[str, list[str]]:
    """Objective name -> the shipped presets (``audiossl pretrain --config NAME``) that train it, by name."""
    # lazy: yaml and the config package are only needed here; every `audiossl` start-up imports this module
    import yaml

    from audiossl.train.config import list_presets, preset_path

    found: dict[str, list[str]] = {}
    for name, _ in list_presets():
        data = yaml.safe_load(preset_path(name).read_text(encoding="utf-8")) or {}
        objective = str((data.get("objective") or {}).get("name", "?"))
        found.setdefault(objective, []).append(name)
    return found


@app.command("list")
def list_command() -> None:
    """List every registered objective: its name, a one-line description and its shipped presets.

    A preset is what `audiossl pretrain --config NAME` takes; any objective trains any encoder
    family (change encoder.family and encoder.overrides with --set).
    """
    from audiossl.objectives import list_objectives

    presets = presets_by_objective()
    for name, description in list_objectives():
        shipped = presets.get(name, [])
        suffix = f"  [presets: {', '.join(shipped)}]" if shipped else ""
        typer.echo(f"{name:10s} {description}{suffix}")
