"""``audiossl plugins``: installed downstream plugins; mounting them; option helpers for their commands.

At start-up :func:`mount_plugins` adds every discovered plugin's typer app to the root app as
``audiossl <plugin> ...``; a plugin that fails to load is reported (warning, and in
``audiossl plugins list``) and the other commands keep working, unless
``AUDIOSSL_STRICT_PLUGINS=1`` (then every command stops with the error).

Plugin authors build thin ``train`` / ``evaluate`` commands from the option types and
:func:`~audiossl.cli.options.downstream_options` of :mod:`audiossl.cli.options` (re-exported
here) and :func:`run_training` and :func:`run_evaluation`, so every plugin takes the same
upstream, mode and optimiser options, defined once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

# Shared option types: defined in audiossl.cli.options, importable here under their old path.
from audiossl.cli.options import (
    BatchSecondsOption,
    CheckpointOption,
    ConfigOption,
    DataArgument,
    DeviceOption,
    DownstreamSettings,
    Flag,
    FreezeStepsOption,
    LrOption,
    MaxStepsOption,
    MaxUttSecondsOption,
    ModeOption,
    OutOption,
    ResumeOption,
    RunDirArgument,
    SeedOption,
    SetOption,
    UpstreamLrOption,
    UpstreamOption,
    ValidOption,
    downstream_config,
    downstream_options,
    option_group,
)
from audiossl.downstream.plugin import STRICT_ENV, PluginError, discover_plugins, strict_plugins
from audiossl.errors import UserError
from audiossl.fileio import ensure_writable_dir, latest_checkpoint, removed_if_failed

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from audiossl.downstream.plugin import Plugin
    from audiossl.downstream.task import DownstreamTask
    from audiossl.downstream.trainer import DownstreamConfig

app = typer.Typer(help="Installed downstream-task plugins (entry-point group audiossl.plugins).", no_args_is_help=True)

#: Plugins mounted at start-up and the errors of those that failed (filled by :func:`mount_plugins`).
MOUNTED: dict[str, Plugin] = {}
ERRORS: list[PluginError] = []

__all__ = [
    "BatchSecondsOption",
    "CheckpointOption",
    "ConfigOption",
    "DataArgument",
    "DeviceOption",
    "DownstreamSettings",
    "Flag",
    "FreezeStepsOption",
    "LrOption",
    "MaxStepsOption",
    "MaxUttSecondsOption",
    "ModeOption",
    "OutOption",
    "ResumeOption",
    "RunDirArgument",
    "SeedOption",
    "SetOption",
    "UpstreamLrOption",
    "UpstreamOption",
    "ValidOption",
    "app",
    "check_strict",
    "downstream_config",
    "downstream_options",
    "mount_plugins",
    "option_group",
    "run_evaluation",
    "run_training",
]


def _command_names(root: typer.Typer) -> set[str]:
    names = {group.name for group in root.registered_groups if group.name}
    for command in root.registered_commands:
        names.add(command.name or command.callback.__name__.replace("_", "-"))
    return names


def mount_plugins(root: typer.Typer, entry_points: Iterable[EntryPoint] | None = None) -> list[PluginError]:
    """Add every installed plugin's commands to ``root`` as ``<plugin name> ...``; return the failures.

    Never raises: failures (import errors, a name already used by a command) are logged and
    returned; :func:`check_strict` turns them into an error when strict mode is on.
    ``entry_points`` defaults to the installed ones.
    """
    plugins, errors = discover_plugins(entry_points, strict=False)
    taken = _command_names(root)
    for name, plugin in plugins.items():
        if name in taken:
            error = PluginError(name, "name clashes with a built-in command", plugin.distribution)
            logging.getLogger(__name__).warning("%s", error)
            errors.append(error)
            continue
        if plugin.cli is not None:
            root.add_typer(plugin.cli, name=name, help=plugin.description or None)
        MOUNTED[name] = plugin
        taken.add(name)
    ERRORS[:] = errors
    return errors


def check_strict() -> None:
    """In strict mode (``AUDIOSSL_STRICT_PLUGINS=1``), raise the plugin failures found at start-up (all named)."""
    if not ERRORS or not strict_plugins():
        return
    if len(ERRORS) == 1:
        raise ERRORS[0]
    details = "; ".join(str(error) for error in ERRORS)
    raise UserError(f"{len(ERRORS)} plugins failed to load ({STRICT_ENV}=1): {details}")


@app.command("list")
def list_plugins() -> None:
    """List installed plugins: name, version, distribution, labels, description; then broken ones."""
    plugins, errors = discover_plugins(strict=False, warn=False)
    if not plugins and not errors:
        typer.echo("no plugins installed (entry-point group audiossl.plugins)")
        return
    rows = [("name", "version", "distribution", "labels", "description")]
    for name, plugin in sorted(plugins.items()):
        labels = ",".join(plugin.labels) or "-"
        rows.append((name, plugin.version, plugin.distribution or "-", labels, plugin.description))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4])
    for error in errors:
        typer.echo(f"BROKEN {error.plugin}: {error.error}" + (f" ({error.distribution})" if error.distribution else ""))


# ----------------------------------------------------------------------------- helpers for plugin commands


def run_training(
    task: DownstreamTask,
    upstream: str,
    data: Path,
    out: Path,
    config: DownstreamConfig,
    valid: Path | None = None,
    resume: bool = False,
) -> None:
    """Train and print where the run ended (the body of every plugin's ``train`` command)."""
    ensure_writable_dir(out)
    from audiossl.downstream.trainer import train_downstream  # here: torch + the engine; plugins mount at start-up

    # A run that fails before it trained (labels missing, an unreadable upstream) leaves no OUT behind.
    with removed_if_failed(out, started=lambda path: (path / "train.jsonl").exists() or latest_checkpoint(path)):
        result = train_downstream(task, upstream, data, out, config, valid_dir=valid, resume=resume)
    valid_text = "" if result.valid_loss is None else f", valid loss {result.valid_loss:.4f}"
    typer.echo(f"finished step {result.step}: loss {result.loss:.4f}{valid_text}; {result.checkpoint}")


def run_evaluation(
    run_dir: Path,
    data: Path,
    out: Path,
    *,
    task: DownstreamTask | None = None,
    checkpoint: Path | None = None,
    device: str | None = None,
) -> dict[str, float]:
    """Evaluate a run on a data dir and print its metrics (the body of every plugin's ``evaluate`` command)."""
    ensure_writable_dir(out)
    from audiossl.downstream.trainer import evaluate_downstream  # here: torch + the engine (start-up time)

    metrics = evaluate_downstream(run_dir, data, out, checkpoint=checkpoint, task=task, device=device or "auto")
    width = max((len(name) for name in metrics), default=0)
    for name, value in metrics.items():
        typer.echo(f"{name:<{width}}  {value:.4f}" if isinstance(value, float) else f"{name:<{width}}  {value}")
    typer.echo(f"wrote {out / 'metrics.json'}")
    return metrics
