"""audiossl report: metrics tables, losses, plots and audio of an experiment dir, with working relative links."""

from __future__ import annotations

import json
import re
from pathlib import Path

from audiossl.cli.main import main
from audiossl.report import flatten, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def make_exp(root: Path) -> Path:
    exp = root / "exp"
    (exp / "asr" / "decode").mkdir(parents=True)
    (exp / "asr" / "decode" / "metrics.json").write_text(
        json.dumps(
            {"decoder": "greedy", "metrics": {"wer": 0.125, "utterances": 8}, "per_utt": [1, 2], "data_dir": "/x/y"}
        )
    )
    (exp / "ssl" / "iter1" / "pretrain" / "tensorboard").mkdir(parents=True)
    log = [{"kind": "train", "step": 10, "loss": 5.0}, {"kind": "valid", "step": 10, "loss": 9.0}]
    log += [{"kind": "train", "step": 20, "loss": 2.5}]
    (exp / "ssl" / "iter1" / "pretrain" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    (exp / "ssl" / "iter1" / "pretrain" / "loss.png").write_bytes(PNG)
    (exp / "ssl" / "iter1" / "pretrain" / "tensorboard" / "hidden.png").write_bytes(PNG)
    (exp / "vc" / "example").mkdir(parents=True)
    (exp / "vc" / "example" / "converted.wav").write_bytes(b"RIFF")
    (exp / "vc" / "eval" / "converted").mkdir(parents=True)
    (exp / "vc" / "eval" / "converted" / "pair0.wav").write_bytes(b"RIFF")
    (exp / "features.png").write_bytes(PNG)
    return exp


def test_report_tables_links_and_order(tmp_path):
    exp = make_exp(tmp_path)
    out = write_report(exp, tmp_path / "reports" / "report.md", title="demo")
    text = out.read_text()
    assert text.startswith("# demo\n")
    assert "| metrics.wer | 0.125 |" in text and "| decoder | greedy |" in text and "| metrics.utterances | 8 |" in text
    assert "per_utt" not in text and "data_dir" not in text  # lists and paths are left out
    assert "loss 5 at step 10 -> 2.5 at step 20" in text  # train records only
    assert text.index("## ssl") < text.index("## asr") < text.index("## vc")
    assert "hidden.png" not in text and "pair0.wav" not in text  # tensorboard and per-pair outputs skipped
    assert "converted.wav" in text
    for link in re.findall(r"\]\(([^)]+)\)", text):  # every link resolves from the report's folder
        assert (out.parent / link).exists(), link


def test_flatten_keeps_scalars_only():
    assert flatten({"a": {"b": 1, "c": [1]}, "d": True, "e": "x" * 41, "f": 0.5}) == {"a.b": 1, "d": True, "f": 0.5}


def test_empty_and_missing_dirs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "Nothing to report yet" in write_report(tmp_path / "empty", tmp_path / "r.md").read_text()
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.md")]) == 2
    assert "experiment dir not found" in capsys.readouterr().err
