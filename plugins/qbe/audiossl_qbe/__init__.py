"""audiossl plugin: query-by-example spoken term detection (``audiossl qbe ...``).

SUPERB's QbE task (after QUESST 2014): no training; spoken queries are searched in spoken
documents by subsequence DTW over one upstream layer's frame features with cosine
distance, and the detection scores are judged by MTWV (maximum term-weighted value) and
MAP. Queries are cut from a data dir by its word alignments (``words.ctm``, which the
synthetic corpus writes) or given as a list of audio spans. This module stays light (no
torch): audiossl imports it at every start-up to mount the commands.
"""

from __future__ import annotations

from audiossl.downstream.plugin import Plugin

__version__ = "0.1.0"


def plugin() -> Plugin:
    """The entry point (group ``audiossl.plugins``, name ``qbe``)."""
    from audiossl_qbe.cli import app  # lazy: keeps the entry point importable without typer at hand

    return Plugin(
        name="qbe",
        version=__version__,
        description="Query-by-example spoken term detection: subsequence DTW (cosine) per layer; MTWV and MAP.",
        labels=("text",),
        task_factory=None,  # nothing to train: `audiossl qbe evaluate` searches with the frozen upstream
        cli=app,
    )
