"""The plugin objects of this distribution (entry points ``tts``, ``st`` and ``s2s`` of group ``audiossl.plugins``).

Only typer apps and :class:`~audiossl.downstream.plugin.Plugin` are imported here: audiossl loads
these objects at every start-up, so tasks (torch) are imported by the factories, on use.
"""

from __future__ import annotations

from importlib import metadata

from audiossl.downstream.plugin import Plugin
from audiossl_speecht5.cli_s2s import app as s2s_app
from audiossl_speecht5.cli_st import app as st_app
from audiossl_speecht5.cli_tts import app as tts_app


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


def _tts_task(**options):
    from audiossl_speecht5.tts import TTSTask

    return TTSTask(**options)


def _s2s_task(**options):
    from audiossl_speecht5.s2s import S2STask

    return S2STask(**options)


tts = Plugin(
    name="tts",
    version=_version(),
    description="Text-to-speech: attention decoder to log-mel, speaker embeddings, vc vocoders; MCD, CER, similarity.",
    labels=("text", "spk"),
    task_factory=_tts_task,
    cli=tts_app,
)

s2s = Plugin(
    name="s2s",
    version=_version(),
    description="Speech-to-speech voice conversion: upstream frames -> target speaker's log-mel -> vocoder.",
    labels=("spk",),
    task_factory=_s2s_task,
    cli=s2s_app,
)
