"""Downstream plugins: installable distributions found through the ``audiossl.plugins`` entry points.

A plugin is a :class:`Plugin` (its name, the labels it needs, a task factory and a typer app)
exposed by an entry point of the group :data:`ENTRY_POINT_GROUP`, as a ``Plugin`` object or a
zero-argument callable returning one. fairseq2 loads its extensions the same way
(``entry_points(group="fairseq2.extension")``), as does pluggy's
``load_setuptools_entrypoints``. :func:`discover_plugins` loads every entry point through
:func:`audiossl.entrypoints.load_entry_points` (shared with :mod:`audiossl.extensions`); one
that fails is reported (its name and error) without stopping the others, unless the
environment variable :data:`STRICT_ENV` is set to ``1``, which makes any failure an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import TYPE_CHECKING, Any

from audiossl.entrypoints import STRICT_ENV, EntryPointError, distribution_name, load_entry_points, strict_plugins

if TYPE_CHECKING:
    from audiossl.downstream.task import DownstreamTask

logger = logging.getLogger(__name__)

#: Entry-point group under which plugins register.
ENTRY_POINT_GROUP = "audiossl.plugins"

__all__ = [
    "ENTRY_POINT_GROUP",
    "STRICT_ENV",
    "Plugin",
    "PluginError",
    "discover_plugins",
    "get_plugin",
    "load_plugin",
    "strict_plugins",
]


@dataclass(frozen=True)
class Plugin:
    """What a downstream plugin provides.

    ``name`` is also the command group (``audiossl <name> ...``); ``labels`` are the
    :class:`~audiossl.data.dataset.AudioDataset` label names the task reads from a data dir
    (``"emo"`` for utt2emo, ``"spk"``, ``"text"``); ``task_factory(**options)`` builds the
    :class:`~audiossl.downstream.task.DownstreamTask` (called without arguments for defaults,
    and with the options a run saved when it is evaluated later); ``cli`` is mounted as the
    command group. ``distribution`` is filled in by discovery.
    """

    name: str
    version: str
    description: str
    labels: tuple[str, ...] = ()
    task_factory: Callable[..., DownstreamTask] | None = None
    cli: Any | None = None  # typer.Typer; typed loosely so the library does not import typer
    distribution: str | None = field(default=None, compare=False)


class PluginError(EntryPointError):
    """A plugin that could not be loaded (import error, wrong object, duplicate name)."""

    kind = "plugin"

    @property
    def plugin(self) -> str:
        """The plugin's (entry point's) name."""
        return self.name


def load_plugin(entry_point: metadata.EntryPoint) -> Plugin:
    """Load one entry point into a :class:`Plugin` (raises :class:`PluginError` on any failure)."""
    distribution = distribution_name(entry_point)
    try:
        target = entry_point.load()
        plugin = target() if callable(target) and not isinstance(target, Plugin) else target
    except Exception as error:  # a plugin's import may fail in any way; report it, never crash
        raise PluginError(entry_point.name, f"{type(error).__name__}: {error}", distribution) from error
    if not isinstance(plugin, Plugin):
        raise PluginError(
            entry_point.name,
            f"entry point {entry_point.value!r} gave {type(plugin).__name__}, expected audiossl.downstream.Plugin",
            distribution,
        )
    if plugin.name != entry_point.name:
        logger.debug("plugin entry point %r declares the name %r", entry_point.name, plugin.name)
    return replace(plugin, distribution=distribution)


def discover_plugins(
    entry_points: Iterable[metadata.EntryPoint] | None = None, *, strict: bool | None = None, warn: bool = True
) -> tuple[dict[str, Plugin], list[PluginError]]:
    """Every installed plugin by name, and the errors of those that failed to load.

    Failures are logged as warnings; with ``strict`` (default: :func:`strict_plugins`) the
    first one is raised instead. Two plugins with one name: the first wins, the second is an
    error. ``entry_points`` defaults to the group's installed entry points; ``warn=False`` only
    returns the failures (for listings that show them anyway).
    """
    plugins: dict[str, Plugin] = {}

    def load(entry_point: metadata.EntryPoint) -> Plugin:
        plugin = load_plugin(entry_point)
        if plugin.name in plugins:
            raise PluginError(
                plugin.name,
                f"name already taken by distribution {plugins[plugin.name].distribution}",
                plugin.distribution,
            )
        plugins[plugin.name] = plugin
        return plugin

    _, errors = load_entry_points(
        ENTRY_POINT_GROUP, load, entry_points=entry_points, strict=strict, warn=warn, error_class=PluginError
    )
    return plugins, errors


def get_plugin(name: str) -> Plugin:
    """The installed plugin ``name``; a :class:`PluginError` if it is missing or broken."""
    plugins, errors = discover_plugins()
    if name in plugins:
        return plugins[name]
    for error in errors:
        if error.plugin == name:
            raise error
    known = ", ".join(sorted(plugins)) or "none"
    raise PluginError(name, f"not installed (installed plugins: {known})")
