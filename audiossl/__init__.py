"""audiossl: speech and audio self-supervised learning."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Embedder", "load"]


def __getattr__(name: str):
    """``audiossl.load`` and ``audiossl.Embedder``, imported on first use (``import audiossl`` stays light)."""
    if name == "load":
        # lazy: audiossl.embed pulls in torch; `import audiossl` (and the CLI) stays light
        from audiossl.embed import load

        return load
    if name == "Embedder":
        # lazy: audiossl.embed pulls in torch; `import audiossl` (and the CLI) stays light
        from audiossl.embed import Embedder

        return Embedder
    raise AttributeError(f"module 'audiossl' has no attribute {name!r}")
