"""Loading a group of entry points with failure isolation: the one mechanism behind plugins and extensions.

Downstream plugins (``audiossl.plugins``) and extensions (``audiossl.extensions``: encoders,
objectives, front-ends, checkpoint importers) are installable distributions found through
entry points, as fairseq2 loads ``entry_points(group="fairseq2.extension")`` and pluggy's
``load_setuptools_entrypoints`` does. :func:`load_entry_points` loads every entry point of a
group with a caller-given ``load``; one that fails is reported (its name, distribution and
error) without stopping the others, unless the environment variable :data:`STRICT_ENV` is
``1``, which makes any failure an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import TypeVar

from audiossl.errors import UserError

logger = logging.getLogger(__name__)

#: Environment variable: ``1`` makes a plugin or extension that fails to load an error instead of a warning.
STRICT_ENV = "AUDIOSSL_STRICT_PLUGINS"

T = TypeVar("T")


class EntryPointError(UserError):
    """An entry point that could not be loaded (import error, wrong object, duplicate name...)."""

    #: What the entry points provide, for messages ("plugin", "extension").
    kind = "entry point"

    def __init__(self, name: str, error: str, distribution: str | None = None):
        self.name = name
        self.error = error
        self.distribution = distribution
        where = f" (distribution {distribution})" if distribution else ""
        super().__init__(f"{self.kind} {name!r}{where} failed to load: {error}")


def strict_plugins() -> bool:
    """Whether :data:`STRICT_ENV` asks for plugin and extension failures to be fatal."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")


def distribution_name(entry_point: metadata.EntryPoint) -> str | None:
    """The name of the distribution that declares ``entry_point`` (None when unknown)."""
    dist = getattr(entry_point, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def load_entry_points(
    group: str,
    load: Callable[[metadata.EntryPoint], T],
    *,
    entry_points: Iterable[metadata.EntryPoint] | None = None,
    strict: bool | None = None,
    warn: bool = True,
    error_class: type[EntryPointError] = EntryPointError,
) -> tuple[list[tuple[metadata.EntryPoint, T]], list[EntryPointError]]:
    """``load`` every entry point of ``group`` (by name) -> ([(entry point, result)], errors).

    ``load`` may raise an :class:`EntryPointError` (kept as is) or anything else (wrapped in
    ``error_class`` with the exception's type and message). Failures are logged as warnings
    naming the entry point (``warn=False``: only returned); with ``strict`` (default:
    :func:`strict_plugins`) the first one is raised instead. ``entry_points`` defaults to the
    group's installed entry points.
    """
    strict = strict_plugins() if strict is None else strict
    if entry_points is None:
        entry_points = metadata.entry_points(group=group)
    loaded: list[tuple[metadata.EntryPoint, T]] = []
    errors: list[EntryPointError] = []
    for entry_point in sorted(entry_points, key=lambda ep: ep.name):
        try:
            try:
                result = load(entry_point)
            except EntryPointError:
                raise
            except Exception as error:  # third-party code may fail in any way; report it, never crash
                message = f"{type(error).__name__}: {error}"
                raise error_class(entry_point.name, message, distribution_name(entry_point)) from error
        except EntryPointError as error:
            if strict:
                raise
            if warn:
                logger.warning("%s (set %s=1 to make this fatal)", error, STRICT_ENV)
            errors.append(error)
            continue
        loaded.append((entry_point, result))
    return loaded, errors
