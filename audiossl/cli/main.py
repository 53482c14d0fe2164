"""Entry point of the ``audiossl`` command.

Each command is a thin wrapper over one library function. User errors
(:class:`audiossl.errors.UserError`) are printed without a traceback and exit 2.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import typing
from typing import Annotated, Any

import typer
import typer.main

from audiossl import __version__
from audiossl.cli import data as data_commands
from audiossl.cli import dino as dino_commands
from audiossl.cli import encoders as encoders_commands
from audiossl.cli import extract as extract_commands
from audiossl.cli import features as feature_commands
from audiossl.cli import hubert as hubert_commands
from audiossl.cli import interop as interop_commands
from audiossl.cli import kmeans as kmeans_commands
from audiossl.cli import objectives as objective_commands
from audiossl.cli import plugins as plugin_commands
from audiossl.cli import pretrain as pretrain_commands
from audiossl.cli import report as report_commands
from audiossl.cli import superb as superb_commands
from audiossl.config import SCIENTIFIC_FLOAT
from audiossl.errors import UserError, interface, set_interface

# audiossl.data.wav_scp.PIPES_ENV, spelt here: importing the loader would pull torch into every start-up.
PIPES_ENV = "AUDIOSSL_ALLOW_PIPES"

app = typer.Typer(
    name="audiossl",
    help="Speech and audio self-supervised learning: data, front-ends, pretraining, downstream tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(feature_commands.app, name="features")
app.add_typer(encoders_commands.app, name="encoders")
app.add_typer(kmeans_commands.app, name="kmeans")
app.add_typer(hubert_commands.app, name="hubert")
app.add_typer(dino_commands.app, name="dino")
app.add_typer(objective_commands.app, name="objectives")
app.add_typer(interop_commands.app, name="interop")
app.command("pretrain")(pretrain_commands.pretrain)
app.command("extract")(extract_commands.extract)
app.command("extract-merge")(extract_commands.extract_merge)
app.command("export")(extract_commands.export)
app.command("report")(report_commands.report)
app.add_typer(plugin_commands.app, name="plugins")
app.add_typer(superb_commands.app, name="superb")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"audiossl {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    allow_pipes: Annotated[
        bool,
        typer.Option(
            "--allow-pipes",
            help="Run wav.scp pipe commands ('cmd |'); refused by default, since they run through the shell "
            f"(sets {PIPES_ENV}=1 for this command, its workers and child processes).",
        ),
    ] = False,
) -> None:
    """audiossl command line."""
    if allow_pipes:
        os.environ[PIPES_ENV] = "1"  # the process policy of audiossl.data.wav_scp; children inherit it
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    plugin_commands.check_strict()


# Installed plugins become `audiossl <plugin> ...`; kept after every built-in command so names can be checked.
plugin_commands.mount_plugins(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return its exit status (2 for user errors)."""
    previous = interface()
    previous_pipes = os.environ.get(PIPES_ENV)
    set_interface("cli")  # messages name CLI flags, not keyword arguments (restored for in-process callers)
    try:
        return _run_app(argv)
    finally:
        set_interface(previous)
        if previous_pipes is None:  # --allow-pipes lasts one command (in-process callers, tests)
            os.environ.pop(PIPES_ENV, None)
        else:
            os.environ[PIPES_ENV] = previous_pipes


# Errors of the user's filesystem, not of audiossl: reported with the path, exit 2, no traceback.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class _IntegralScientific:
    """Wraps typer's coercion of an integer parameter: ``1e4`` (integral, scientific notation) reads as 10000."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        def plain(item: Any) -> Any:
            if isinstance(item, str) and SCIENTIFIC_FLOAT.match(item.strip()):
                number = float(item.replace("_", ""))
                if number.is_integer():
                    return str(int(number))
            return item

        value = type(value)(plain(item) for item in value) if isinstance(value, (list, tuple)) else plain(value)
        return self.inner.coerce(value, param, ctx)


def _integers_in_scientific_notation(command: Any) -> None:
    """Let every integer option and argument take scientific notation (``--max-steps 1e4``), as configs do.

    Floats already do (``--lr 1e-3``); typer reads integers with pydantic, which refuses ``1e4``.
    """
    for param in getattr(command, "params", ()):
        descriptor = getattr(param, "type_descriptor", None)
        annotation = getattr(descriptor, "annotation", None)
        if annotation is int or int in typing.get_args(annotation):
            param._runtime_param = _IntegralScientific(param.get_runtime_param())
    for sub in getattr(command, "commands", {}).values():
        _integers_in_scientific_notation(sub)


def _run_app(argv: list[str] | None) -> int:
    try:
        command = typer.main.get_command(app)
        _integers_in_scientific_notation(command)
        result = command(args=argv, standalone_mode=False)
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except OSError as error:
        if error.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f"{error.filename}: " if error.filename else ""
        typer.echo(f"error: {where}{error.strerror}", err=True)
        return 2
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as error:
        # Usage errors from typer's bundled click: show them the way click does (exit 2).
        if hasattr(error, "show") and hasattr(error, "exit_code"):
            error.show()
            return int(error.exit_code)
        raise
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
