"""One process of the FSDP test (started by torchrun): a sharded run, then a resume of it, in one job.

Usage: ``torchrun --nproc_per_node 2 fsdp_worker.py CONFIG.yaml DATA_DIR OUT_DIR``. Writes
``OUT_DIR/full`` (4 steps), ``OUT_DIR/resumed`` (step 2 of ``full`` continued to 4) and
``OUT_DIR/shards-rank<R>.json`` (how many elements of each parameter this process held).
The process group is joined here once, so both runs share it (the engine leaves it alone).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

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
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
