"""User-facing errors.

Anything the user can fix (a bad file, a bad config value, a bad label) raises a
:class:`UserError` subclass that names the file and, where there is one, the line.
The CLI prints these without a traceback and exits with status 2.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """An error the user caused and can fix; carries the offending file and line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        if path is None and line is None:
            message = _unwrap_worker_error(type(self), message)
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return f"{where}{self.message}"


def _unwrap_worker_error(cls: type, message: str) -> str:
    """The user's message of an error raised in a DataLoader worker, without the worker's traceback.

    torch re-raises a worker's exception in the main process as ``cls(text)``, where ``text`` is
    "Caught X in DataLoader worker process N." followed by the whole traceback: for a user error
    that would print a traceback instead of the message. Keep the message (the last line).
    """
    if not message.startswith("Caught ") or "\nOriginal Traceback" not in message:
        return message
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    at = message.rfind("\n" + marker)
    if at < 0:
        return message
    return message[at + 1 + len(marker) :].rstrip("\n")


class DataError(UserError):
    """A problem in a data directory (missing ids, bad sort order, bad label...)."""


class AudioError(UserError):
    """Audio that cannot be read or is unusable (missing, truncated, empty, NaN/Inf)."""


class ConfigError(UserError):
    """A configuration value or key that is not valid."""


# Which interface the user is in: messages name a CLI flag on the command line and a keyword
# argument in Python. The CLI's entry point switches this once; library code only asks.
_INTERFACE = "python"


def set_interface(name: str) -> None:
    """``"cli"`` or ``"python"``: how :func:`spell_option` names options from now on (this process)."""
    global _INTERFACE
    if name not in ("cli", "python"):
        raise ValueError(f"interface must be 'cli' or 'python', got {name!r}")
    _INTERFACE = name


def interface() -> str:
    """``"cli"`` when running under the ``audiossl`` command, else ``"python"``."""
    return _INTERFACE


def spell_option(keyword: str, value: object = None, *, flag: str | None = None) -> str:
    """Name an option the way the user's interface spells it.

    ``spell_option("on_rate_mismatch", "resample")`` is ``--on-rate-mismatch resample`` on the
    command line and ``on_rate_mismatch='resample'`` in Python; a boolean ``value`` True names
    the bare flag (``--allow-pipes`` / ``allow_pipes=True``). ``flag`` overrides the derived
    CLI spelling where the command's flag differs from the keyword.
    """
    if _INTERFACE == "cli":
        name = flag or "--" + keyword.replace("_", "-")
        if value is None or value is True:
            return name
        return f"{name} {value}"
    if value is None:
        return keyword
    return f"{keyword}={value!r}"
