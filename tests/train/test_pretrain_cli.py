"""``audiossl pretrain`` through the CLI entry point: runs, resumes, lists presets, and exits 2 on bad input."""

from __future__ import annotations

import logging

import pytest
import yaml
from train_helpers import TINY

from audiossl.cli.main import main
from audiossl.train.checkpoint import list_checkpoints


def config_file(tmp_path, changes: dict | None = None, text: str | None = None):
    path = tmp_path / "config.yaml"
    if text is None:
        data = yaml.safe_load(yaml.safe_dump(TINY))
        for dotted, value in (changes or {}).items():
            node = data
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def test_list_configs(capsys):
    assert main(["pretrain", "--list-configs"]) == 0
    out = capsys.readouterr().out
    for name in ("mspm-ast-tiny", "mspm-mamba-tiny", "wav2vec2-conformer-tiny", "w2vbert-conformer-tiny"):
        assert name in out


def test_train_then_resume_then_refuse_to_overwrite(varied_dir, tmp_path, capsys):
    config = config_file(tmp_path)
    out = tmp_path / "run"
    args = ["pretrain", "--config", str(config), "--data", str(varied_dir), "--out", str(out)]
    assert main([*args, "--set", "run.max_steps=2"]) == 0
    assert [step for step, _ in list_checkpoints(out)] == [2]
    assert main([*args, "--set", "run.max_steps=3", "--resume"]) == 0  # extends the run
    assert [step for step, _ in list_checkpoints(out)] == [2, 3]
    # --resume alone finds the config and the data dirs in the run dir.
    assert main(["pretrain", "--out", str(out), "--resume", "--set", "run.max_steps=4"]) == 0
    assert [step for step, _ in list_checkpoints(out)][-1] == 4
    capsys.readouterr()
    assert main([*args, "--set", "run.max_steps=2"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def run_error(tmp_path, capsys, config, data) -> str:
    status = main(["pretrain", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "run")])
    assert status == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"encoder.family": "nope"}, "unknown encoder 'nope'"),
        ({"objective.name": "nope"}, "unknown objective 'nope'"),
        ({"run.max_stepz": 3}, "unknown key 'run.max_stepz'"),
        (
            {"objective.name": "mspm", "objective.config": {"mask": {"kind": "random", "count": 1000}}},
            "cannot mask 1000 tokens",
        ),
        ({"encoder.overrides.input.num_bins": 40}, "reads 40 bins"),
    ],
)
def test_bad_configs_exit_2_with_a_clear_message(changes, message, varied_dir, tmp_path, capsys):
    assert message in run_error(tmp_path, capsys, config_file(tmp_path, changes), varied_dir)


def test_unknown_key_names_file_and_line(varied_dir, tmp_path, capsys):
    config = config_file(tmp_path, text="run:\n  max_steps: 2\n  max_stpes: 3\n")
    assert f"{config}:3: unknown key 'run.max_stpes'" in run_error(tmp_path, capsys, config, varied_dir)


def test_empty_or_missing_data_dir_exits_2(tmp_path, capsys):
    config = config_file(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "wav.scp").write_text("", encoding="utf-8")
    assert "no utterances" in run_error(tmp_path, capsys, config, empty)
    assert "not found" in run_error(tmp_path, capsys, config, tmp_path / "missing")


def test_resume_without_checkpoint_starts_at_step_0_and_missing_options_exit_2(varied_dir, tmp_path, capsys, caplog):
    config = config_file(tmp_path)
    args = ["pretrain", "--config", str(config), "--data", str(varied_dir), "--out", str(tmp_path / "r"), "--resume"]
    with caplog.at_level(logging.INFO, logger="audiossl"):
        status = main([*args, "--set", "run.max_steps=1"])
    assert status == 0 and "from step 0" in caplog.text  # a run stopped before its first checkpoint starts over
    assert [step for step, _ in list_checkpoints(tmp_path / "r")] == [1]
    assert main(["pretrain", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert main(["pretrain", "--data", str(varied_dir), "--out", str(tmp_path / "r")]) == 2
