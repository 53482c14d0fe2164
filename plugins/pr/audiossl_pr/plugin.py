"""The ``pr`` plugin object, found through the ``audiossl.plugins`` entry point of this distribution."""

from __future__ import annotations

from importlib import metadata

from audiossl.downstream.plugin import Plugin
from audiossl_pr.cli import app


def _version() -> str:
    try:
        return metadata.version("audiossl-pr")
    except metadata.PackageNotFoundError:  # imported from a source tree that is not installed
        return "0+unknown"


def _task(**options):
    # lazy: the task pulls in torch; every `audiossl` start-up imports this module
    from audiossl_pr.task import PRTask

    return PRTask(**options)


plugin = Plugin(
    name="pr",
    version=_version(),
    description="Phoneme recognition (SUPERB PR): CTC over text.phn or text + a lexicon, phone error rate.",
    labels=(),
    task_factory=_task,
    cli=app,
)
