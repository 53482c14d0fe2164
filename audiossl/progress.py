"""Progress bars for long work: shown on a terminal, silent otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``items`` in a progress bar on stderr when stderr is a TTY."""
    return tqdm(items, desc=desc, total=total, unit=unit, disable=not sys.stderr.isatty(), leave=False)
