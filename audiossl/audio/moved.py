"""Names that moved from ``audiossl.audio`` up to ``audiossl.data``, still importable for one release.

``audio`` decodes audio and must not import ``data`` (it sits below it), so the old paths
resolve these names only when one is asked for, with a :class:`DeprecationWarning` that names
the new home. Nothing inside audiossl uses the old paths.
"""

from __future__ import annotations

import importlib
import warnings


def moved_attribute(module: str, moves: dict[str, str], name: str) -> object:
    """The object ``name`` of the module it moved to (``moves[name]``), for a module's ``__getattr__``."""
    if name not in moves:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.{name} moved to {moves[name]}.{name}; the old path is deprecated and will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(moves[name]), name)
