"""Two processes (gloo): a budget spent on one process stops both after the same step, both saying why.

Each process has its own fake clock; only rank 1's moves (a minute per step), as if its machine
were slower. Both must stop after step 3 with ``stopped_by == TIME_BUDGET`` (so that under torchrun
every process exits 0), and the checkpoint of step 3 is written once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.multiprocessing as mp
from scale_helpers import free_port
from test_max_minutes import FakeClock, NoisyUnit

from audiossl.engine import TIME_BUDGET, Engine, EngineConfig
from audiossl.fileio import checkpoint_path


def worker(rank: int, port: int, run_dir: str, results: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1"})
    os.environ["MASTER_PORT"] = str(port)
    clock = FakeClock()
    callbacks = [clock.tick] if rank == 1 else []
    config = EngineConfig(
        max_steps=6, max_minutes=2.5, device="cpu", num_threads=1, tensorboard=False, checkpoint_every=100
    )
    engine = Engine(NoisyUnit(), config, run_dir, clock=clock, callbacks=callbacks)
    try:
        result = engine.train()
    finally:
        engine.close()
    Path(results, f"rank{rank}.json").write_text(json.dumps({"step": result.step, "stopped_by": result.stopped_by}))


def test_every_process_stops_on_a_budget_spent_on_one(tmp_path):
    run_dir, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.start_processes(worker, args=(free_port(), str(run_dir), str(results)), nprocs=2, start_method="spawn")
    outcomes = [json.loads((results / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert outcomes == [{"step": 3, "stopped_by": TIME_BUDGET}] * 2
    assert checkpoint_path(run_dir, 3).is_file()
