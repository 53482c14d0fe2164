"""Downstream training on the engine: DDP under torchrun, bf16 autocast on CPU, one log record per step."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_tasks import make_task

from audiossl.downstream import DownstreamConfig, train_downstream
from audiossl.engine import read_records
from audiossl.fileio import latest_checkpoint, load_checkpoint

HERE = Path(__file__).resolve().parent


def ddp_config(**changes) -> DownstreamConfig:
    """Frozen upstream, one utterance per batch (every batch is shorter than 0.5 s x 2), 4 steps."""
    base = {"max_steps": 4, "batch_seconds": 0.5, "log_every": 1, "checkpoint_every": 4, "device": "cpu", "lr": 1e-2}
    return DownstreamConfig(**{**base, **changes})


def trained_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    saved = load_checkpoint(latest_checkpoint(run_dir))
    return {
        **{f"head.{k}": v for k, v in saved["head"].items()},
        **{f"up.{k}": v for k, v in saved["upstream"].items()},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_downstream_run_equals_one_process_with_the_same_global_batch(
    engine_pretrained, engine_corpus, tmp_path
):
    # Eight one-utterance batches per epoch: two processes take global batches (0, 1), (2, 3), ...
    # per step; one process with two accumulated micro-batches takes the same pairs. The loss is a
    # mean per batch, so DDP's mean of the two gradients is the accumulated gradient.
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(HERE / "downstream_ddp_worker.py"), str(engine_pretrained), str(engine_corpus), str(ddp_dir),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rank0 = torch.load(ddp_dir / "rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_dir / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys() and any(k.startswith("up.featurizer") for k in rank0)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks diverged at {name}"
    saved = load_checkpoint(latest_checkpoint(ddp_dir))
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2 and saved["sampler"]["world_size"] == 2

    single_dir = tmp_path / "single"
    train_downstream(make_task(), str(engine_pretrained), engine_corpus, single_dir, ddp_config(accumulation_steps=2))
    single = trained_weights(single_dir)
    assert single.keys() == rank0.keys()
    for name in single:
        torch.testing.assert_close(rank0[name], single[name], rtol=0, atol=1e-5, msg=name)
    # Sensitivity: one process stepping on each batch alone (half the global batch) ends elsewhere.
    train_downstream(make_task(), str(engine_pretrained), engine_corpus, tmp_path / "half", ddp_config())
    half = trained_weights(tmp_path / "half")
    assert max(float((half[name] - single[name]).abs().max()) for name in single) > 1e-4


def test_bf16_autocast_trains_a_downstream_head_on_cpu(engine_pretrained, engine_corpus, tmp_path):
    task = make_task()
    build_head = task.make_head
    seen: dict[str, object] = {}

    def make_head(dim, state):
        head = build_head(dim, state)
        seen["initial"] = {k: v.detach().clone() for k, v in head.state_dict().items()}

        def record(module, args, output) -> None:
            seen.setdefault("dtype", output.dtype)

        head.register_forward_hook(record)
        return head

    task.make_head = make_head
    run = tmp_path / "run"
    result = train_downstream(task, str(engine_pretrained), engine_corpus, run, ddp_config(precision="bf16"))
    assert result.step == 4 and math.isfinite(result.loss)
    assert all(math.isfinite(r["loss"]) for r in read_records(run / "train.jsonl"))
    assert seen["dtype"] == torch.bfloat16  # the head's matmul ran in bf16
    head = load_checkpoint(latest_checkpoint(run))["head"]
    assert all(head[k].dtype == torch.float32 for k in head)  # weights stay fp32
    assert any(not torch.equal(head[k], seen["initial"][k]) for k in head)


def test_fp16_downstream_run_saves_its_gradient_scaler(engine_corpus, tmp_path):
    run = tmp_path / "run"
    result = train_downstream(make_task(), "fbank-raw", engine_corpus, run, ddp_config(precision="fp16", max_steps=2))
    assert result.step == 2
    assert load_checkpoint(latest_checkpoint(run))["scaler"]  # the scaler's state travels with the run


class Crash(RuntimeError):
    pass


def crash_after(step: int):
    def callback(engine) -> None:
        if engine.step == step:
            raise Crash(f"killed after step {step}")

    return callback


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_train_jsonl_holds_each_step_once_after_a_kill_and_resume(engine_pretrained, engine_corpus, tmp_path, mode):
    config = ddp_config(mode=mode, max_steps=6, checkpoint_every=2, batch_seconds=4.0)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_downstream(make_task(), str(engine_pretrained), engine_corpus, straight, config)
    with pytest.raises(Crash):  # killed after step 3: the log has step 3, the newest checkpoint is step 2
        train_downstream(make_task(), str(engine_pretrained), engine_corpus, split, config, callbacks=[crash_after(3)])
    assert [r["step"] for r in read_records(split / "train.jsonl")] == [1, 2, 3]
    train_downstream(make_task(), str(engine_pretrained), engine_corpus, split, config, resume=True)

    lines = [json.loads(line) for line in (split / "train.jsonl").read_text().splitlines()]
    steps = [record["step"] for record in lines if record["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # each step once, in order
    assert [r["step"] for r in lines if r["kind"] == "event" and r["event"] == "resume"] == [2]
    expected = [r["loss"] for r in read_records(straight / "train.jsonl")]
    assert [r["loss"] for r in lines if r["kind"] == "train"] == expected  # and the resumed run is exact
