"""One process of the 2-process DDP test (started by torchrun): train, then save this rank's weights.

Usage: ``torchrun --nproc_per_node 2 ddp_worker.py CONFIG.yaml DATA_DIR RUN_DIR``. The stand-in
objective is registered here, since torchrun starts fresh interpreters.
"""

from __future__ import annotations

import os
import sys

import torch
from train_helpers import register_standin

from audiossl.train import pretrain, resolve_config


def main() -> None:
    config_path, data_dir, run_dir = sys.argv[1:4]
    torch.set_num_threads(1)
    register_standin()
    config = resolve_config(config_path)
    rank = int(os.environ["RANK"])

    def save_weights(trainer) -> None:
        if trainer.step == config.run.max_steps:
            torch.save(trainer.objective.state_dict(), os.path.join(run_dir, f"rank{rank}.pt"))

    result = pretrain(config, [data_dir], run_dir, callbacks=[save_weights])
    assert result.step == config.run.max_steps


if __name__ == "__main__":
    main()
