"""The plugin objects of this distribution (entry points ``tts``, ``st`` and ``s2s`` of group ``audiossl.plugins``).

Only typer apps and :class:`~audiossl.downstream.plugin.Plugin` are imported here: audiossl loads
these objects at every start-up, so tasks (torch) are imported by the factories, on use.
"""

from __future__ import annotations

from importlib import metadata

from audiossl.downstream.plugin import Plugin
from audiossl_speecht5.cli_st import app as st_app


def _version() -> str:
    try:
        return metadata.version("audiossl-speecht5")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def _st_task(**options):
    from audiossl_speecht5.st import STTask

    return STTask(**options)


st = Plugin(
    name="st",
    version=_version(),
    description="Speech translation into text.<lang>: attention decoder on any upstream, BLEU (sacrebleu).",
    labels=(),
    task_factory=_st_task,
    cli=st_app,
)
