"""audiossl plugin: speech enhancement (``audiossl se``) and two-speaker separation (``audiossl ss``).

SUPERB's SE and SS tasks on any upstream: a bidirectional-LSTM head on the upstream's
weighted layer sum (frozen) or on a fine-tuned encoder predicts STFT magnitude masks; the
estimate is resynthesised with the input's phase. SE is scored by PESQ (wide-band), STOI and
SI-SNR improvement; SS is trained with utterance-level permutation-invariant training and
scored by SI-SDR improvement. Pairs (noise at chosen SNRs, or given clean/noisy dirs) and
two-speaker mixtures are made from any data dir. This module stays light (no torch import):
audiossl imports it at every start-up to mount the commands.
"""

from __future__ import annotations

from typing import Any

from audiossl.downstream.plugin import Plugin

__version__ = "0.1.0"


def make_se_task(**options: Any):
    """An :class:`audiossl_enhance.task.EnhancementTask` built with ``options``."""
    from audiossl_enhance.task import EnhancementTask  # lazy: torch

    return EnhancementTask(**options)


def make_ss_task(**options: Any):
    """An :class:`audiossl_enhance.task.SeparationTask` built with ``options``."""
    from audiossl_enhance.task import SeparationTask  # lazy: torch

    return SeparationTask(**options)


def se_plugin() -> Plugin:
    """The entry point ``se`` (group ``audiossl.plugins``)."""
    from audiossl_enhance.cli import se_app  # lazy: the cli imports this package (import cycle)

    return Plugin(
        name="se",
        version=__version__,
        description="Speech enhancement: STFT mask head, noisy phase; PESQ (wb), STOI, SI-SNR improvement.",
        labels=("clean",),
        task_factory=make_se_task,
        cli=se_app,
    )


def ss_plugin() -> Plugin:
    """The entry point ``ss`` (group ``audiossl.plugins``)."""
    from audiossl_enhance.cli import ss_app

    return Plugin(
        name="ss",
        version=__version__,
        description="Two-speaker separation: two STFT masks, utterance-level PIT; SI-SDR improvement.",
        labels=("src1", "src2"),
        task_factory=make_ss_task,
        cli=ss_app,
    )
