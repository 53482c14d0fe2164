"""The plugin as audiossl sees it: its entry point, its task factory, a cheap import."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from audiossl.downstream.plugin import ENTRY_POINT_GROUP, load_plugin
from audiossl_asr.plugin import plugin
from audiossl_asr.task import ASRTask


def test_entry_point_loads_the_plugin():
    entry_points = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "asr"]
    assert entry_points, "audiossl-asr is not installed: pip install --no-deps -e plugins/asr"
    loaded = load_plugin(entry_points[0])
    assert loaded.name == "asr" and loaded.labels == ("text",) and loaded.distribution == "audiossl-asr"
    assert loaded.cli is not None


def test_task_factory_round_trips_options():
    task = plugin.task_factory(tokenizer="unigram", vocab_size=40, head="mlp", hidden=8)
    assert isinstance(task, ASRTask) and task.name == plugin.name and task.labels == plugin.labels
    assert plugin.task_factory(**task.options()).options() == task.options()


def test_plugin_import_does_not_load_torch():
    code = "import sys, audiossl_asr.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_root_cli_mounts_asr_and_reports_user_errors(tmp_path, capsys):
    from audiossl.cli.main import main

    (tmp_path / "text").write_text("u1 sun moon\nu2 tea\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("u1 sun\nu2\n", encoding="utf-8")
    assert main(["asr", "score", str(tmp_path), str(tmp_path / "hyp.txt")]) == 0
    assert "WER 66.67% (2/3 words)" in capsys.readouterr().out
    assert main(["asr", "score", str(tmp_path), str(tmp_path / "missing.txt")]) == 2
    assert f"{tmp_path / 'missing.txt'}: file not found" in capsys.readouterr().err
