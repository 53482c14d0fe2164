"""``audiossl pretrain --set run.max_minutes=M``: a spent budget is a clean stop (exit 0), and --resume continues.

A budget of 1e-9 minutes is spent before the first step ends, so the run stops after exactly one
step whatever the machine's speed (nothing here is timed).
"""

from __future__ import annotations

import json

from audiossl.cli.main import main
from audiossl.testing.downstream import TINY_PRETRAIN_OVERRIDES
from audiossl.train.checkpoint import list_checkpoints


def sets(*values: str) -> list[str]:
    return [item for value in values for item in ("--set", value)]


def test_pretrain_stops_on_the_budget_exits_0_and_resumes(engine_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--config", "mspm-ast-tiny", "--data", str(engine_corpus), "--out", str(out)]
    args += sets(*TINY_PRETRAIN_OVERRIDES, "run.max_steps=3", "run.checkpoint_every=100")

    assert main([*args, *sets("run.max_minutes=1e-9")]) == 0
    err = capsys.readouterr().err
    assert "stopped at step 1 of 3: run.max_minutes=1e-09 spent" in err
    assert "continue with --resume" in err
    assert [step for step, _ in list_checkpoints(out)] == [1]
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert records[-1]["event"] == "stop" and records[-1]["reason"] == "time budget"

    # Each invocation has its own budget: one more step, then a resume without a budget finishes.
    assert main([*args, *sets("run.max_minutes=1e-9"), "--resume"]) == 0
    assert [step for step, _ in list_checkpoints(out)] == [1, 2]
    assert main([*args, *sets("run.max_minutes=null"), "--resume"]) == 0
    assert "finished step 3" in capsys.readouterr().out
    assert [step for step, _ in list_checkpoints(out)] == [1, 2, 3]


def test_a_bad_budget_is_a_user_error_naming_the_key(engine_corpus, tmp_path, capsys):
    args = ["pretrain", "--config", "mspm-ast-tiny", "--data", str(engine_corpus), "--out", str(tmp_path / "run")]
    assert main([*args, *sets(*TINY_PRETRAIN_OVERRIDES, "run.max_minutes=-5")]) == 2
    assert "run.max_minutes must be > 0" in capsys.readouterr().err
