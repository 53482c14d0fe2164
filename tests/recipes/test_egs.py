"""The demo recipe (egs/synth/ssl1) and the FSDD recipe end to end in smoke mode, with stage resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FSDD = REPO.parent / "shared" / "data" / "fsdd"


def run_recipe(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", str(REPO / script), *args], capture_output=True, text=True, env=env, timeout=1800)


def test_synth_recipe_smoke_resumes_and_reports(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    common = ["--smoke", "true", "--exp_dir", str(exp), "--data_dir", str(data), "--nj", "1"]
    first = run_recipe("egs/synth/ssl1/run.sh", *common, "--stop_stage", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in (exp / ".done").iterdir()) == ["stage1", "stage2"]
    rest = run_recipe("egs/synth/ssl1/run.sh", *common, "--stage", "1")
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "stage 1: synthetic corpus" in rest.stderr and "already done" in rest.stderr  # stages 1-2 reused
    assert "stage 3: unseen-speaker split" in rest.stderr
    for metrics in ("asr/decode_greedy", "asr/decode_beam", "sv/eval", "sv/eval_frozen", "er/eval", "vc/eval"):
        assert (exp / metrics / "metrics.json").is_file(), metrics
    er = json.loads((exp / "er" / "eval" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= er["UA"] <= 1.0 and 0.0 <= er["WA"] <= 1.0
    assert (exp / "vc" / "example" / "converted.wav").stat().st_size > 44
    report = (exp / "report.md").read_text()
    for section in ("## ssl", "## asr", "## sv", "## er", "## vc"):
        assert section in report
    assert "features.png" in report and "det.png" in report and "confusion.png" in report
    again = run_recipe("egs/synth/ssl1/run.sh", *common)  # everything done: nothing reruns
    assert again.returncode == 0 and again.stderr.count("already done") == 9


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"FSDD recordings not found at {FSDD}")
def test_fsdd_recipe_smoke(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    result = run_recipe(
        "egs/fsdd/ssl1/run.sh", "--smoke", "true", "--exp_dir", str(exp), "--data_dir", str(data), "--nj", "1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stage 1:" not in result.stderr  # the recordings exist: no download
    train_speakers = set((data / "sv_train" / "train" / "spk2utt").read_text().split()[::2])
    test_lines = (data / "sv_test" / "test" / "spk2utt").read_text().splitlines()
    assert train_speakers and not train_speakers & {line.split()[0] for line in test_lines}  # unseen in SV
    asr = json.loads((exp / "asr" / "decode_beam" / "metrics.json").read_text())
    assert asr["metrics"]["reference_words"] == 6 * 10  # one test take of every digit for each of the 6 speakers
    assert (exp / "report.md").is_file()
