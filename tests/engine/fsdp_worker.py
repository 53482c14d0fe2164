"""One process of the FSDP + rank-failure test (started by torchrun): three runs in one job.

Usage: ``torchrun --nproc_per_node 2 fsdp_worker.py CONFIG.yaml DATA_DIR OUT_DIR``.

1. ``OUT_DIR/full``: the config as given (``run.distributed: fsdp``), 4 steps;
   ``OUT_DIR/shards-rank<R>.json`` says how many elements of each parameter this process held;
2. ``OUT_DIR/resumed``: step 2 of ``full`` continued to 4;
3. ``OUT_DIR/killed``: the same under DDP, where rank 1 SIGKILLs itself after step 1 (no handler,
   no ``finally``: an out-of-memory kill or a lost node); rank 0 writes the error it stops with to
   ``OUT_DIR/survivor.txt`` and exits with it.

One job instead of three saves two torchrun start-ups (the slowest part on a shared machine).
The process group is joined here once, so the runs share it (the engine leaves it alone).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from audiossl.engine.peers import RankFailureError
from audiossl.train import pretrain, resolve_config


def main() -> None:
    config_path, data_dir, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    config = resolve_config(config_path)
    held: dict[str, list[int]] = {}

    def record_shards(trainer) -> None:
        if trainer.step == 1:
            for name, param in trainer.objective.named_parameters():
                local = param.to_local() if hasattr(param, "to_local") else param
                held[name] = [local.numel(), param.numel()]

    pretrain(config, [data_dir], out / "full", callbacks=[record_shards])
    (out / f"shards-rank{rank}.json").write_text(json.dumps(held))
    if rank == 0:
        (out / "resumed").mkdir()
        shutil.copy(out / "full" / "ckpt-00000002.pt", out / "resumed" / "ckpt-00000002.pt")
    dist.barrier()
    pretrain(config, [data_dir], out / "resumed", resume=True)
    dist.barrier()

    def kill(trainer) -> None:
        if rank == 1 and trainer.step == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    ddp = resolve_config(config_path, ["run.distributed=ddp"])
    try:
        pretrain(ddp, [data_dir], out / "killed", callbacks=[kill])
    except RankFailureError as error:
        (out / "survivor.txt").write_text(str(error))
        raise


if __name__ == "__main__":
    main()
