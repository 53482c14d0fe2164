"""Deprecated: :func:`utterance_features` moved to :mod:`audiossl.data.features`; kept for one release.

It reads an utterance of a data dir, which the audio layer (below data) must not do.
"""

from __future__ import annotations

from audiossl.audio.moved import moved_attribute

_MOVED = {"utterance_features": "audiossl.data.features"}


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, _MOVED, name)
