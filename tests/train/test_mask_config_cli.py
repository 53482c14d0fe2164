"""``audiossl pretrain`` refuses a mask that would hide every token: exit 2, the key (and its YAML line) named."""

from __future__ import annotations

import re

import yaml
from train_helpers import TINY

from audiossl.cli.main import main


def _config(tmp_path, objective: dict) -> tuple:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["objective"] = objective
    text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text.splitlines()


def _pretrain(tmp_path, capsys, config, data, *extra: str) -> str:
    out = tmp_path / "run"
    status = main(["pretrain", "--config", str(config), "--data", str(data), "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert "Traceback" not in captured.err
    assert not any(out.glob("**/checkpoint*")), "nothing may be trained"
    return captured.err


def test_ratio_one_names_the_key_and_its_line(varied_dir, tmp_path, capsys):
    objective = {"name": "mspm", "config": {"mask": {"kind": "chunk", "count": 400, "ratio": 1.0}}}
    config, lines = _config(tmp_path, objective)
    line = next(number for number, text in enumerate(lines, 1) if text.strip().startswith("ratio:"))
    err = _pretrain(tmp_path, capsys, config, varied_dir)
    assert f"{config}:{line}: objective.config.mask.ratio: 1.0 masks every token" in err


def test_span_start_prob_one_from_set_names_the_key(varied_dir, tmp_path, capsys):
    config, _ = _config(tmp_path, {"name": "wav2vec2", "config": {}})
    changes = ["--set", "objective.config.mask.kind=span", "--set", "objective.config.mask.start_prob=1.0"]
    err = _pretrain(tmp_path, capsys, config, varied_dir, *changes)
    assert "objective.config.mask.start_prob: 1.0 starts a span at every token" in err


def test_count_equal_to_the_shortest_utterance_tokens_fails_before_training(varied_dir, tmp_path, capsys):
    objective = {"name": "mspm", "config": {"mask": {"kind": "random", "count": 100000}}}
    config, _ = _config(tmp_path, objective)
    err = _pretrain(tmp_path, capsys, config, varied_dir)
    tokens = int(re.search(r"it has only (\d+) tokens", err)[1])  # the shortest utterance's token count
    objective["config"]["mask"]["count"] = tokens
    config, _ = _config(tmp_path, objective)
    err = _pretrain(tmp_path, capsys, config, varied_dir)
    assert f"objective.config.mask.count={tokens} would mask all {tokens} tokens" in err
    assert "no visible context" in err and "shortest training utterance" in err
