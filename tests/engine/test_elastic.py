"""Multi-node through torchrun's elastic rendezvous (c10d): 2 "nodes" x 1 process on localhost.

Two ``torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d`` agents meet at one endpoint,
each starts one ``audiossl pretrain`` worker (gloo), and the run must end where one process ends
with the same global batch (two accumulated micro-batches per step; see scale_helpers).
Tolerance: DDP averages the two ranks' gradients as (g0 + g1) / 2 in one all-reduce, the
reference as g0 / 2 + g1 / 2 over two backward passes; the two sums may differ in the last bit
of each gradient element, which four AdamW steps of lr 3e-3 keep far below 1e-6 (the weights
move by more than 1e-3 over the same steps: checked below, so the comparison can fail).

The recipe side: ``--rdzv_endpoint`` turns the launcher into an elastic one, and the Slurm
launcher is valid shell (``bash -n``; it is never submitted here).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import torch
from scale_helpers import STEPS, free_port, max_difference, model_at, mspm_config, reference_run, run_all, torchrun

REPO = Path(__file__).resolve().parents[2]


def test_two_nodes_through_c10d_rendezvous_match_one_process_on_the_same_global_batch(engine_corpus, tmp_path):
    config = mspm_config(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "elastic"
    endpoint = f"127.0.0.1:{free_port()}"
    node = torchrun(
        "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint,
        "--rdzv_id", uuid.uuid4().hex, "-m", "audiossl.cli", "pretrain", "--config", str(config),
        "--data", str(engine_corpus), "--out", str(run_dir),
    )  # fmt: skip
    results = run_all([node, node], cwd=tmp_path)
    for rc, output in results:
        assert rc == 0, output[-4000:]

    start = json.loads((run_dir / "train.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["world_size"] == 2
    state = torch.load(run_dir / f"ckpt-{STEPS:08d}.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2

    reference = model_at(reference_run(tmp_path, engine_corpus), STEPS)
    elastic = model_at(run_dir, STEPS)
    assert max_difference(elastic, reference) < 1e-6
    assert max_difference(elastic, model_at(run_dir, 2)) > 1e-3  # the weights moved: the check has teeth


def _launcher(**options: str) -> list[str]:
    """What recipes/lib.sh's train_launcher prints under ``options`` (recipe variables)."""
    assignments = "; ".join([":", *(f"{name}={value}" for name, value in options.items())])
    script = f'. "{REPO}/recipes/lib.sh"; {assignments}; train_launcher'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_recipe_launcher_takes_the_rendezvous_endpoint():
    elastic = _launcher(ngpu="8", nnodes="4", rdzv_endpoint="node01:29400", rdzv_id="job7")
    joined = " ".join(elastic)
    assert "--rdzv_backend c10d --rdzv_endpoint node01:29400 --rdzv_id job7" in joined
    assert "--nnodes 4 --nproc_per_node 8" in joined and "--master_addr" not in elastic
    static = _launcher(ngpu="2")
    assert "--master_addr" in static and "--rdzv_endpoint" not in static
    assert _launcher() == ["audiossl"]  # one process: no torchrun
    under_slurm = _launcher(launch_prefix="'srun --ntasks-per-node 1'", nnodes="2", rdzv_endpoint="n1:29400")
    assert under_slurm[:4] == ["srun", "--ntasks-per-node", "1", "torchrun"]


def test_slurm_launcher_is_valid_shell():
    for script in ("recipes/slurm.sh", "recipes/lib.sh", "recipes/ssl.sh"):
        done = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{script}: {done.stderr}"
    text = (REPO / "recipes/slurm.sh").read_text()
    assert "srun" in text and "--rdzv_endpoint" in text and "#SBATCH" in text
