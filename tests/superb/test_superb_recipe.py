"""egs/superb/superb1 prepares the corpora it is given; `audiossl superb` runs real pairs on them and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fake_superb_corpora as fake

from audiossl.cli.main import main
from audiossl.superb import corpora
from audiossl.superb.dataconfig import load_data_config

REPO = Path(__file__).resolve().parents[2]


def run_recipe(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    script = REPO / "egs" / "superb" / "superb1" / "run.sh"
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=600)


def test_recipe_prepares_the_given_corpora_only(tmp_path):
    sc = fake.speech_commands(tmp_path / "speech_commands_v0.01")
    exp, data = tmp_path / "exp", tmp_path / "data"
    prepared = run_recipe(
        "--exp_dir", str(exp), "--data_dir", str(data), "--speech_commands", str(sc), "--stop_stage", "8"
    )
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert "stage 3: VoxCeleb1 (sid, sv) - no corpus given, skipped" in prepared.stderr
    assert list(load_data_config(data / "superb.yaml")) == ["ks"]
    empty = run_recipe("--exp_dir", str(tmp_path / "e2"), "--data_dir", str(tmp_path / "d2"))
    assert empty.returncode != 0 and "no corpus prepared" in empty.stderr


def test_superb_trains_and_searches_real_pairs_then_skips_them(tmp_path, capsys):
    config = tmp_path / "superb.yaml"
    parts = corpora.prepare_speech_commands(fake.speech_commands(tmp_path / "sc"), tmp_path / "ks")
    ks_entry = {**{k: str(v) for k, v in parts.items()}, "label": "utt2kw", "options": {"reference_probe": False}}
    corpora.add_to_data_config(config, {"ks": ks_entry})  # options: the task factory's (no probe: faster)
    made = corpora.prepare_quesst14(fake.quesst14(tmp_path / "quesst"), tmp_path / "qbe")
    docs = str(made["docs"])
    entry = {
        "dev": docs,
        "test": docs,
        "dev_queries": str(made["dev_queries"]),
        "test_queries": str(made["eval_queries"]),
    }
    corpora.add_to_data_config(config, {"qbe": entry})
    out = tmp_path / "out"
    argv = [
        "superb",
        "-u",
        "fbank-raw",
        "--data-config",
        str(config),
        "-o",
        str(out),
        "--max-steps",
        "2",
        "--batch-seconds",
        "4",
        "--set",
        "early_stopping=false",
        "--set",
        "standardize=false",
    ]
    assert main(argv) == 0
    ks = json.loads((out / "results" / "fbank-raw" / "ks.json").read_text())
    assert ks["metric"] == "WA" and 0.0 <= ks["value"] <= 1.0 and ks["metrics"]["WA"] == ks["value"]
    assert (out / "runs" / "fbank-raw" / "ks" / "eval" / "metrics.json").is_file()
    qbe = json.loads((out / "results" / "fbank-raw" / "qbe.json").read_text())
    assert qbe["metric"] == "MTWV" and qbe["extra"]["queries"] == 2 and len(qbe["layer_scores"]) == 1
    board = (out / "leaderboard.md").read_text()
    assert "| fbank-raw |" in board and "ks WA ↑" in board and "qbe MTWV ↑" in board
    capsys.readouterr()
    assert main(argv) == 0  # everything finished: nothing reruns
    assert "0 pairs run, 2 finished before (skipped), 0 failed" in capsys.readouterr().out
