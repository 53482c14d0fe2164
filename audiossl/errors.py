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


class DataError(UserError):
    """A problem in a data directory (missing ids, bad sort order, bad label...)."""


class AudioError(UserError):
    """Audio that cannot be read or is unusable (missing, truncated, empty, NaN/Inf)."""


class ConfigError(UserError):
    """A configuration value or key that is not valid."""
