"""Fixtures of the embedding tests: tiny checkpoints of every encoder family and a small data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from embed_helpers import write_checkpoint, write_data_dir


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """(family, input kind) -> a tiny randomly initialised audiossl checkpoint, written on first use."""
    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[tuple[str, str], Path] = {}

    class Lazy(dict):
        def __missing__(self, key: tuple[str, str]) -> Path:
            cache[key] = write_checkpoint(root / f"{key[0]}-{key[1]}.pt", *key)
            self[key] = cache[key]
            return cache[key]

    return Lazy()


@pytest.fixture(scope="session")
def ast_checkpoint(checkpoints) -> Path:
    """The tiny AST on stacked fbank frames (the one every format and resume test uses)."""
    return checkpoints[("ast", "frame")]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """Seven utterances of 0.3-1.2 s at 16 kHz."""
    return write_data_dir(tmp_path_factory.mktemp("data"), [0.5, 1.2, 0.3, 0.9, 0.7, 1.1, 0.4])
