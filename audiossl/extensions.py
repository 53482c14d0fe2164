"""Extensions: third-party encoders, objectives, front-ends and checkpoint importers, found through entry points.

A distribution declares entry points in the group :data:`ENTRY_POINT_GROUP`; each names a
module (importing it registers its components with the usual decorators:
:func:`~audiossl.encoders.register_encoder`, :func:`~audiossl.objectives.register_objective`,
:func:`~audiossl.audio.frontends.register_frontend`, :func:`~audiossl.interop.register_importer`) or a
zero-argument callable that registers them::

    [project.entry-points."audiossl.extensions"]
    toy = "audiossl_toy"                 # import the module
    more = "audiossl_toy.extra:register" # or call a function

Extensions are loaded lazily, on the first lookup in any registry (so ``import audiossl``
stays fast). Built-ins always register first: an extension imports the public packages
(``audiossl.encoders``, ...), whose ``__init__`` registers every built-in before the
extension's own decorators run. Loading goes through the same loader as downstream plugins
(:func:`audiossl.entrypoints.load_entry_points`): one that fails to import or to register
(e.g. a name already taken) is reported with its name and the others keep working;
``AUDIOSSL_STRICT_PLUGINS=1`` makes any failure fatal.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from importlib import metadata

from audiossl.entrypoints import EntryPointError, distribution_name, load_entry_points

#: Entry-point group under which extensions register.
ENTRY_POINT_GROUP = "audiossl.extensions"


class ExtensionError(EntryPointError):
    """An extension that could not be loaded (import error, failing register call, duplicate name)."""

    kind = "extension"


_lock = threading.RLock()
_state: dict[str, object] = {"loaded": False, "extensions": {}, "errors": []}


def load_extension(entry_point: metadata.EntryPoint) -> str | None:
    """Import one extension (calling its target when it is a function); returns its distribution name."""
    target = entry_point.load()
    if callable(target) and not isinstance(target, type):
        target()
    return distribution_name(entry_point)


def load_extensions(
    entry_points: Iterable[metadata.EntryPoint] | None = None, *, strict: bool | None = None, warn: bool = True
) -> tuple[dict[str, str | None], list[ExtensionError]]:
    """Load extensions now -> ({entry point name: distribution}, errors); see the module doc.

    ``entry_points`` defaults to the installed ones of :data:`ENTRY_POINT_GROUP`; ``strict``
    defaults to ``AUDIOSSL_STRICT_PLUGINS``. The result is also what :func:`loaded_extensions`
    reports afterwards.
    """
    with _lock:
        _state["loaded"] = True  # set first: lookups made while extensions load must not recurse
        loaded, errors = load_entry_points(
            ENTRY_POINT_GROUP,
            load_extension,
            entry_points=entry_points,
            strict=strict,
            warn=warn,
            error_class=ExtensionError,
        )
        extensions = {entry_point.name: distribution for entry_point, distribution in loaded}
        _state["extensions"], _state["errors"] = extensions, errors
        return extensions, errors


def ensure_extensions() -> None:
    """Load the installed extensions unless done already (what every registry lookup calls)."""
    if _state["loaded"]:
        return
    with _lock:
        if not _state["loaded"]:
            load_extensions()


def loaded_extensions() -> tuple[dict[str, str | None], list[ExtensionError]]:
    """The extensions loaded so far ({name: distribution}) and the ones that failed."""
    return dict(_state["extensions"]), list(_state["errors"])
