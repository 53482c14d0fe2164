"""The ``vc`` plugin object, found through the ``audiossl.plugins`` entry point of this distribution.

Voice conversion trains no head on labelled data, so it has no downstream task factory: its
commands (``audiossl vc ...``) are the whole plugin.
"""

from __future__ import annotations

from importlib import metadata

from audiossl.downstream.plugin import Plugin
from audiossl_vc.cli import app


def _version() -> str:
    try:
        return metadata.version("audiossl-vc")
    except metadata.PackageNotFoundError:  # imported from a source tree that is not installed
        return "0+unknown"


PLUGIN = Plugin(
    name="vc",
    version=_version(),
    description="Voice conversion: kNN matching of SSL frames against a target pool; HiFi-GAN or mel+Griffin-Lim.",
    labels=("spk",),
    task_factory=None,
    cli=app,
)
