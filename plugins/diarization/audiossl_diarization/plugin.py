"""The ``diarization`` plugin object, loaded through the ``audiossl.plugins`` entry point."""

from __future__ import annotations

from audiossl.downstream.plugin import Plugin
from audiossl_diarization import __version__
from audiossl_diarization.cli import app


def plugin() -> Plugin:
    """Speaker diarization: the ``audiossl diarization`` commands (no downstream task: nothing to fine-tune here)."""
    return Plugin(
        name="diarization",
        version=__version__,
        description="Speaker diarization: pyannote.audio pipeline on audiossl embeddings, local segmentation, DER.",
        cli=app,
    )
