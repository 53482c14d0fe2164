"""recipes/lib.sh: option parsing, stage selection, .done markers, failure reporting, the training launcher."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "recipes" / "lib.sh"

#: A three-stage recipe whose stages append their number to a trace file; stage 2 fails on request.
RECIPE = """#!/usr/bin/env bash
help_message="usage: toy.sh [--fail_at N]"
fail_at=0
. "{lib}"
parse_options "$@"
step() {{ echo "stage $1 output"; echo "$1" >>"$exp_dir/trace"; [ "$1" != "$fail_at" ]; }}
run_stage 1 "first" step 1
run_stage 2 "second" step 2
run_stage 3 "third" step 3
echo "launcher: $(train_launcher | tr '\\n' ' ')"
echo "device: $(train_device)"
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "toy.sh"
    path.write_text(RECIPE.format(lib=LIB))
    return path


def run(recipe: Path, exp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(recipe), "--exp_dir", str(exp), *args], capture_output=True, text=True, timeout=60
    )


def trace(exp: Path) -> list[str]:
    path = exp / "trace"
    return path.read_text().split() if path.exists() else []


def test_stage_range_and_logs(recipe, tmp_path):
    exp = tmp_path / "exp"
    result = run(recipe, exp, "--stage", "2", "--stop_stage=3")
    assert result.returncode == 0, result.stderr
    assert trace(exp) == ["2", "3"]
    assert "stage 2 output" in (exp / "logs" / "stage2.log").read_text()
    assert not (exp / "logs" / "stage1.log").exists()
    assert sorted(p.name for p in (exp / ".done").iterdir()) == ["stage2", "stage3"]


def test_finished_stages_are_skipped_and_force_reruns(recipe, tmp_path):
    exp = tmp_path / "exp"
    assert run(recipe, exp, "--stop_stage", "2").returncode == 0
    result = run(recipe, exp)  # stages 1-2 done: only 3 runs
    assert result.returncode == 0, result.stderr
    assert trace(exp) == ["1", "2", "3"]
    assert "already done" in result.stderr
    assert run(recipe, exp, "--stage", "3", "--force", "true").returncode == 0
    assert trace(exp) == ["1", "2", "3", "3"]


def test_rerunning_a_stage_invalidates_later_stages(recipe, tmp_path):
    exp = tmp_path / "exp"
    assert run(recipe, exp).returncode == 0
    (exp / ".done" / "stage2").unlink()
    assert run(recipe, exp).returncode == 0  # 2 reruns; 3 was made from 2's old output, so it reruns too
    assert trace(exp) == ["1", "2", "3", "2", "3"]


def test_failing_stage_stops_and_names_its_log(recipe, tmp_path):
    exp = tmp_path / "exp"
    result = run(recipe, exp, "--fail_at", "2")
    assert result.returncode == 1
    assert trace(exp) == ["1", "2"]  # stage 3 never ran
    assert f"full log: {exp}/logs/stage2.log" in result.stderr
    assert "stage 2 output" in result.stderr  # the log's tail is shown
    assert not (exp / ".done" / "stage2").exists()
    resumed = run(recipe, exp, "--stage", "2")  # fixed: resume from the failed stage
    assert resumed.returncode == 0
    assert trace(exp) == ["1", "2", "2", "3"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no_such_option", "1"], "unknown option --no_such_option"),
        (["--stage"], "option --stage needs a value"),
        (["--stage", "two"], "--stage and --stop_stage take stage numbers"),
        (["--nj", "0"], "--nj takes a positive number"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_options_are_clear_errors(recipe, tmp_path, args, message):
    result = run(recipe, tmp_path / "exp", *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert trace(tmp_path / "exp") == []


def test_help(recipe, tmp_path):
    result = subprocess.run(["bash", str(recipe), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: toy.sh")


def test_training_launcher(recipe, tmp_path):
    single = run(recipe, tmp_path / "a", "--stage", "9")
    assert "launcher: audiossl \n" in single.stdout and "device: cpu" in single.stdout
    multi = run(recipe, tmp_path / "b", "--stage", "9", "--ngpu", "4", "--nnodes", "2", "--node_rank", "1")
    line = next(line for line in multi.stdout.splitlines() if line.startswith("launcher:"))
    assert line.split()[1:] == [
        "torchrun", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "4",
        "--master_addr", "localhost", "--master_port", "29500", "-m", "audiossl.cli",
    ]  # fmt: skip
    assert "device: cuda" in multi.stdout
