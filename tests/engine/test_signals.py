"""Stops of a downstream run on the engine: SIGKILL (then resume), SIGTERM (a checkpoint, then resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine_tasks import make_task

from audiossl.downstream import DownstreamConfig, train_downstream
from audiossl.engine import read_records
from audiossl.fileio import latest_checkpoint, list_checkpoints, load_checkpoint

HERE = Path(__file__).resolve().parent


def kill_config() -> DownstreamConfig:
    return DownstreamConfig(
        max_steps=6, batch_seconds=4.0, log_every=1, checkpoint_every=2, device="cpu", lr=1e-2, num_workers=0
    )


def run_worker(data_dir: Path, run_dir: Path, kill_after: int, *resume: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    command = [sys.executable, str(HERE / "kill_worker.py"), str(data_dir), str(run_dir), str(kill_after), *resume]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode


def train_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "train"]


def test_sigkill_then_resume_logs_every_step_once(engine_corpus, tmp_path):
    run = tmp_path / "run"
    assert run_worker(engine_corpus, run, 3) == -signal.SIGKILL
    assert [r["step"] for r in train_lines(run)] == [1, 2, 3]  # step 3 logged, the newest checkpoint is step 2
    assert [step for step, _ in list_checkpoints(run)] == [2]
    assert run_worker(engine_corpus, run, -1, "--resume") == 0
    assert [r["step"] for r in train_lines(run)] == [1, 2, 3, 4, 5, 6]

    straight = tmp_path / "straight"
    train_downstream(make_task(), "fbank-raw", engine_corpus, straight, kill_config())
    assert [r["loss"] for r in train_lines(run)] == [r["loss"] for r in read_records(straight / "train.jsonl")]


def test_sigterm_stops_a_downstream_run_after_the_step_with_a_checkpoint(engine_corpus, tmp_path):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)

    def terminate(engine) -> None:
        if engine.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train_downstream(make_task(), "fbank-raw", engine_corpus, run, kill_config(), callbacks=[terminate])
    assert result.step == 3 and load_checkpoint(latest_checkpoint(run))["step"] == 3
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    events = [
        r["event"] for r in map(json.loads, (run / "train.jsonl").read_text().splitlines()) if r["kind"] == "event"
    ]
    assert events == ["start", "stop"]
    result = train_downstream(make_task(), "fbank-raw", engine_corpus, run, kill_config(), resume=True)
    assert result.step == 6 and [r["step"] for r in train_lines(run)] == [1, 2, 3, 4, 5, 6]
