"""Two CPU processes under torchrun (gloo): ranks stay in sync and match one process on the same global batch.

Construction: eight utterances of equal length, two per batch, so all batches have the same
size and the global list of batches is the same for one and for two processes. Two processes
take batches (0, 1), (2, 3), ... at steps 1, 2, ...; one process with two accumulated
micro-batches per step takes the same pairs. The stand-in loss is a mean over items, so DDP's
average of the two ranks' gradients equals the accumulated gradient (and the gradient of the
union batch). Masks are seeded by the global batch index, so they match too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from train_helpers import tiny_config

from audiossl.fileio import atomic_write
from audiossl.train import pretrain
from audiossl.train.checkpoint import checkpoint_path, load_checkpoint
from audiossl.train.config import dump_config

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_matches_single_process_on_the_same_global_batch(equal_dir, tmp_path):
    settings = {
        "data": {"max_seconds_per_batch": 1.0, "normalize": "global"},  # global stats: computed once, shared
        "run": {"max_steps": 4, "checkpoint_every": 4},
    }
    ddp_config = tiny_config(**settings)
    config_file = tmp_path / "ddp.yaml"
    with atomic_write(config_file) as handle:
        handle.write(dump_config(ddp_config))
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(HERE / "ddp_worker.py"), str(config_file), str(equal_dir), str(ddp_dir),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rank0 = torch.load(ddp_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_dir / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks diverged at {name}"

    single_config = tiny_config(**settings, optim={"accumulation_steps": 2})
    pretrain(single_config, [equal_dir], tmp_path / "single")
    single = load_checkpoint(checkpoint_path(tmp_path / "single", 4))["model"]
    for name in single:
        torch.testing.assert_close(rank0[name], single[name], rtol=0, atol=1e-5, msg=name)
    # Sensitivity: one process stepping on each batch alone (half the global batch) ends elsewhere.
    pretrain(tiny_config(**settings), [equal_dir], tmp_path / "half")
    half = load_checkpoint(checkpoint_path(tmp_path / "half", 4))["model"]
    assert max(float((half[name] - single[name]).abs().max()) for name in single) > 1e-4

    state = load_checkpoint(checkpoint_path(ddp_dir, 4))
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # every rank's random state is saved
    assert state["data"]["world_size"] == 2
    for name, value in state["model"].items():
        assert torch.equal(value, rank0[name])
