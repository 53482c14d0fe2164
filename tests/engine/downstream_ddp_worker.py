"""One process of the 2-process downstream DDP test (started by torchrun): train, save this rank's weights.

Usage: ``torchrun --nproc_per_node 2 downstream_ddp_worker.py UPSTREAM DATA_DIR RUN_DIR``.
"""

from __future__ import annotations

import os
import sys

import torch
from engine_tasks import make_task
from test_downstream_engine import ddp_config

from audiossl.downstream import train_downstream


def main() -> None:
    upstream, data_dir, run_dir = sys.argv[1:4]
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    config = ddp_config()

    def save_weights(engine) -> None:
        if engine.step == config.max_steps:
            weights = {f"head.{k}": v for k, v in engine.unit.head.state_dict().items()}
            weights |= {f"up.{k}": v for k, v in engine.unit.upstream.checkpoint_state().items()}
            torch.save(weights, os.path.join(run_dir, f"rank{rank}.pt"))

    result = train_downstream(make_task(), upstream, data_dir, run_dir, config, callbacks=[save_weights])
    assert result.step == config.max_steps


if __name__ == "__main__":
    main()
