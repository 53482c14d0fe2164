"""FSDP2 (``run.distributed: fsdp``) on CPU, and a rank that dies: one 2-process gloo job (fsdp_worker.py).

torch 2.9.1 runs ``fully_shard`` on CPU with gloo (DTensor shards, all-gather before each block,
reduce-scatter after its backward), so the sharded path is tested here, not only on GPUs:

* parity: 2 sharded processes end where one process ends with the same global batch (two
  accumulated micro-batches; tolerance as in test_elastic: reduce-scatter sums the two ranks'
  gradients in another order than accumulation, a last-bit difference per element);
* the parameters really are sharded (each process holds about half of every large parameter);
* checkpoints are full (plain tensors of the whole model, the one-process format), and resuming
  step 2 of the sharded run under FSDP reaches the same step-4 weights and AdamW states bit for bit;
* fp16 (whose gradient scaler does not handle sharded gradients) is refused with a config error.

Then, in the same job (one torchrun start-up less), a DDP run where rank 1 SIGKILLs itself after
step 1: rank 0 must stop with the engine's own message naming rank 1 (torchrun's summary names
it too, so the check reads the survivor's error), the job must end non-zero within the launch
bound (a hang fails the test), and the run must not have gone past the failed step.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from scale_helpers import (
    HERE,
    STEPS,
    free_port,
    max_difference,
    model_at,
    mspm_config,
    reference_run,
    run_all,
    torchrun,
)

from audiossl.errors import ConfigError
from audiossl.fileio import checkpoint_path, load_checkpoint
from audiossl.train import resolve_config


def test_fsdp_matches_one_process_resumes_exactly_and_a_killed_rank_is_named(engine_corpus, tmp_path):
    config = mspm_config(tmp_path / "fsdp.yaml", run={"distributed": "fsdp"})
    out = tmp_path / "fsdp"
    out.mkdir()
    command = torchrun(
        "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(HERE / "fsdp_worker.py"), str(config), str(engine_corpus), str(out),
    )  # fmt: skip
    [(rc, output)] = run_all([command], cwd=tmp_path)
    assert (out / "resumed" / f"ckpt-{STEPS:08d}.pt").is_file(), output[-4000:]  # the FSDP runs finished

    # The killed DDP run: the job fails, and the survivor named the dead rank and itself.
    assert rc != 0
    survivor = (out / "survivor.txt").read_text() if (out / "survivor.txt").is_file() else ""
    assert survivor.startswith("the run lost a process at step 2"), output[-4000:]
    assert re.search(r"rank 1 \(\S+ pid \d+\) stopped: no heartbeat", survivor), survivor
    assert "this process (rank 0 of 2" in survivor
    assert "the run lost a process" in output  # in the job's log too
    assert not list((out / "killed").glob("ckpt-*.pt"))  # nothing written past the failure

    held = [json.loads((out / f"shards-rank{rank}.json").read_text()) for rank in (0, 1)]
    largest = max(held[0], key=lambda name: held[0][name][1])
    for name in held[0]:  # the two shards of every parameter make it up exactly
        assert held[0][name][0] + held[1][name][0] == held[0][name][1], name
    assert 0 < held[0][largest][0] < held[0][largest][1], f"{largest} is not sharded"

    full = load_checkpoint(checkpoint_path(out / "full", STEPS))
    reference = model_at(reference_run(tmp_path, engine_corpus), STEPS)
    assert all(type(value) is torch.Tensor for value in full["model"].values())  # gathered, not DTensors
    assert {k: v.shape for k, v in full["model"].items()} == {k: v.shape for k, v in reference.items()}
    assert max_difference(full["model"], reference) < 1e-6
    assert max_difference(full["model"], model_at(out / "full", 2)) > 1e-3  # the weights moved

    resumed = load_checkpoint(checkpoint_path(out / "resumed", STEPS))
    for name, value in full["model"].items():
        assert torch.equal(resumed["model"][name], value), name
    for index, entries in full["optimizer"]["state"].items():
        for key, value in entries.items():
            assert torch.equal(resumed["optimizer"]["state"][index][key], value), (index, key)
    reference_state = load_checkpoint(checkpoint_path(reference_run(tmp_path, engine_corpus), STEPS))["optimizer"]
    for index, entries in reference_state["state"].items():  # full AdamW states, the one-process layout
        assert {k: v.shape for k, v in entries.items()} == {
            k: v.shape for k, v in full["optimizer"]["state"][index].items()
        }


def test_fsdp_refuses_fp16(tmp_path):
    with pytest.raises(ConfigError, match="fp16") as caught:
        resolve_config(mspm_config(tmp_path / "fp16.yaml", run={"distributed": "fsdp", "precision": "fp16"}))
    assert "fp16.yaml" in str(caught.value)
