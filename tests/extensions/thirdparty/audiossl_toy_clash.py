"""A broken third-party extension: it registers an encoder under a built-in's name ("ast")."""

from __future__ import annotations

from audiossl.encoders import register_encoder


def register() -> None:
    """Called by the extension loader: fails, the name is taken."""

    @register_encoder("ast", dict, presets={})
    class Clash:  # noqa: F841  (never used: registration fails first)
        pass
