"""Train a downstream head and SIGKILL this process after a given step (no handler, no finally runs).

Usage: ``python kill_worker.py DATA_DIR RUN_DIR KILL_AFTER_STEP [--resume]``.
"""

from __future__ import annotations

import os
import signal
import sys

from engine_tasks import make_task
from test_signals import kill_config

from audiossl.downstream import train_downstream


def main() -> None:
    data_dir, run_dir, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def kill(engine) -> None:
        if engine.step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    train_downstream(
        make_task(), "fbank-raw", data_dir, run_dir, kill_config(), resume="--resume" in sys.argv, callbacks=[kill]
    )


if __name__ == "__main__":
    main()
