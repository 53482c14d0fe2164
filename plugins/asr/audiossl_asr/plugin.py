"""The ``asr`` plugin object, found through the ``audiossl.plugins`` entry point of this distribution."""

from __future__ import annotations

from importlib import metadata

from audiossl.downstream.plugin import Plugin
from audiossl_asr.cli import app


def _version() -> str:
    try:
        return metadata.version("audiossl-asr")
    except metadata.PackageNotFoundError:  # imported from a source tree that is not installed
        return "0+unknown"


#: Head options of runs saved before the head had frame stacking and SpecAugment (they had neither).
LEGACY_HEAD_OPTIONS = {"stride": 1, "spec_augment": False}


def _task(**options):
    # lazy: the task pulls in torch; every `audiossl` start-up imports this module
    from audiossl_asr.task import ASRTask

    if "head" in options and "stride" not in options:  # a run saved by an older version: rebuild its head as it was
        options = {**LEGACY_HEAD_OPTIONS, **options}
    return ASRTask(**options)


plugin = Plugin(
    name="asr",
    version=_version(),
    description="CTC speech recognition: char/sentencepiece units, greedy and beam decoding, WER/CER.",
    labels=("text",),
    task_factory=_task,
    cli=app,
)
