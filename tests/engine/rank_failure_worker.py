"""One process of the rank-failure test (started by torchrun): rank ``KILLED`` SIGKILLs itself after a step.

Usage: ``torchrun --nproc_per_node 2 rank_failure_worker.py CONFIG.yaml DATA_DIR RUN_DIR KILLED AFTER_STEP``.
SIGKILL runs no handler and no ``finally``: the process vanishes as on an out-of-memory kill or
a lost node, and the survivors must notice and name it on their own.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from audiossl.train import pretrain, resolve_config


def main() -> None:
    config_path, data_dir, run_dir, killed, after = sys.argv[1:6]
    torch.set_num_threads(1)
    config = resolve_config(config_path)
    rank = int(os.environ["RANK"])

    def kill(trainer) -> None:
        if rank == int(killed) and trainer.step == int(after):
            os.kill(os.getpid(), signal.SIGKILL)

    pretrain(config, [data_dir], run_dir, callbacks=[kill])


if __name__ == "__main__":
    main()
