"""Stopping a run cleanly: SIGINT/SIGTERM ask for a stop after the current step (with a checkpoint).

A second signal stops at once without a checkpoint. Handlers are installed only in the main
thread, for the duration of :meth:`StopRequest.handling_signals`, and the previous ones are put
back afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StopRequest:
    """Why the run should stop after the current step (a signal's name or a caller's reason), or None."""

    def __init__(self, logger: logging.Logger):
        self.reason: str | None = None
        self.logger = logger

    def request(self, reason: str) -> None:
        """Ask for a stop after the current step (the first reason is kept)."""
        self.reason = self.reason or reason

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM request a stop while inside (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self.reason is not None:
                raise KeyboardInterrupt(f"second {name}: stopping now without a checkpoint")
            self.reason = name
            self.logger.warning("%s: stopping after this step with a checkpoint (send it again to stop at once)", name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
