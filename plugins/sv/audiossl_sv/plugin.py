"""The ``sv`` plugin object, loaded through the ``audiossl.plugins`` entry point."""

from __future__ import annotations

from audiossl.downstream.plugin import Plugin
from audiossl_sv import __version__
from audiossl_sv.cli import app


def _create_task(**options):
    # Imported on use: the task module pulls in torch, which `audiossl --help` should not pay for.
    from audiossl_sv.task import create_task

    return create_task(**options)


def plugin() -> Plugin:
    """Speaker verification: task factory (labels ``spk``) and the ``audiossl sv`` commands."""
    return Plugin(
        name="sv",
        version=__version__,
        description="Speaker verification: AAM-softmax speaker head, cosine scoring with AS-norm, EER/minDCF, DET.",
        labels=("spk",),
        task_factory=_create_task,
        cli=app,
    )
