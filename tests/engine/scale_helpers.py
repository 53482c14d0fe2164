"""Helpers of the engine-at-scale tests: a tiny mspm config, torchrun launches that cannot hang, a reference run.

The reference is one process with two accumulated micro-batches per step: the same global batch
as two processes with one micro-batch each (the sampler deals the same global list of batches
round-robin to the ranks, and masks are seeded by the global batch index), so DDP, elastic
multi-node and FSDP runs must end where it ends, up to the order of float additions.
"""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from audiossl.fileio import checkpoint_path, load_checkpoint

HERE = Path(__file__).resolve().parent

#: A 2-block AST of width 32 on stacked 32-bin fbank frames, mspm; crops of 0.5 s, two per batch.
TINY_MSPM: dict[str, Any] = {
    "data": {
        "sample_rate": 16000,
        "max_seconds_per_batch": 1.0,
        "max_utt_seconds": 0.5,
        "min_utt_seconds": 0.2,
        "num_workers": 0,
        "frontend": "fbank",
        "frontend_config": {"num_mel_bins": 32},
        "normalize": "utterance",
    },
    "encoder": {
        "family": "ast",
        "preset": "tiny",
        "overrides": {
            "dim": 32,
            "num_layers": 2,
            "num_heads": 4,
            "input": {"kind": "frame", "frame_stack": 2, "num_bins": 32, "conv_pos_kernel": 8, "conv_pos_groups": 4},
        },
    },
    "objective": {"name": "mspm", "config": {"mask": {"kind": "chunk", "count": 10, "ratio": 0.5}}},
    "optim": {"lr": 3.0e-3, "warmup_steps": 2, "grad_clip": 1.0},
    "run": {
        "max_steps": 4,
        "device": "cpu",
        "log_every": 1,
        "checkpoint_every": 2,
        "keep_last": 10,
        "tensorboard": False,
        "num_threads": 1,
    },
}

#: Steps of every run of these tests (checkpoints at 2 and 4).
STEPS = 4

#: Bound on one torchrun launch: a hang fails the test instead of blocking the suite.
LAUNCH_TIMEOUT_S = 240

_reference: dict[str, Path] = {}


def mspm_config(path: Path, **sections: dict[str, Any]) -> Path:
    """Write :data:`TINY_MSPM` with ``sections`` merged in (``run={"distributed": "fsdp"}``) to ``path``."""
    data = copy.deepcopy(TINY_MSPM)
    for name, values in sections.items():
        data[name].update(values)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_env() -> dict[str, str]:
    """Environment of launched processes: one thread each, these helpers importable."""
    path = os.pathsep.join([str(HERE), *sys.path])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def torchrun(*args: str) -> list[str]:
    """The torchrun command line (``python -m torch.distributed.run``) with ``args``."""
    return [sys.executable, "-m", "torch.distributed.run", "--max_restarts", "0", *args]


def run_all(commands: list[list[str]], cwd: Path, timeout: float = LAUNCH_TIMEOUT_S) -> list[tuple[int, str]]:
    """Run ``commands`` at once; (exit status, stdout + stderr) of each; all killed past ``timeout``."""
    procs = [
        subprocess.Popen(
            command,
            cwd=cwd,
            env=launch_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills torchrun and its workers
        )
        for command in commands
    ]
    results = []
    try:
        for proc in procs:
            output, _ = proc.communicate(timeout=timeout)
            results.append((proc.returncode, output))
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        outputs = [proc.communicate()[0] for proc in procs]
        message = f"launch did not end within {timeout} s:\n" + "\n".join(o[-2000:] for o in outputs)
        raise AssertionError(message) from None
    return results


def model_at(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The model weights of checkpoint ``step`` of a run."""
    return load_checkpoint(checkpoint_path(run_dir, step))["model"]


def reference_run(root: Path, corpus: Path) -> Path:
    """One process, two accumulated micro-batches per step: the same global batch as two processes (cached)."""
    if "run" not in _reference:
        from audiossl.train import pretrain, resolve_config

        config = resolve_config(mspm_config(root / "reference.yaml", optim={"accumulation_steps": 2}))
        pretrain(config, [corpus], root / "reference")
        _reference["run"] = root / "reference"
    return _reference["run"]


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over the tensors of two state dicts with the same keys."""
    assert first.keys() == second.keys()
    return max(float((first[name].float() - second[name].float()).abs().max()) for name in first)
