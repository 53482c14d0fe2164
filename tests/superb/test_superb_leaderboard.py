"""The SUPERB score against hand computation; Markdown/CSV/PNG outputs."""

from __future__ import annotations

import csv
import io

import pytest

from audiossl.superb.leaderboard import arrange, csv_text, markdown, overall_scores, task_scores, write_leaderboard
from audiossl.superb.runner import PairResult


def result(upstream: str, task: str, value: float, higher: bool = True, weights=None) -> PairResult:
    metric = "ACC" if higher else "wer"
    return PairResult(upstream, upstream, task, metric, higher, value, {metric: value}, layer_weights=weights)


RESULTS = [
    result("fbank", "ks", 0.40),
    result("ssl", "ks", 0.90),
    result("rand", "ks", 0.30),
    result("fbank", "asr", 0.80, higher=False),
    result("ssl", "asr", 0.20, higher=False),
    result("rand", "asr", 0.50, higher=False),
    result("ssl", "er", 0.7),  # the floor has no er: er is left out of the score
]


def test_task_scores_by_hand():
    scores = task_scores(arrange(RESULTS), "fbank")
    # ks: best 0.9, floor 0.4 -> rand (0.3 - 0.4) / 0.5 = -0.2
    assert scores[("rand", "ks")] == pytest.approx(-200.0)
    assert scores[("ssl", "ks")] == pytest.approx(1000.0) and scores[("fbank", "ks")] == 0.0
    # asr (lower is better): best 0.2, floor 0.8 -> rand (0.5 - 0.8) / (0.2 - 0.8) = 0.5
    assert scores[("rand", "asr")] == pytest.approx(500.0)
    assert ("ssl", "er") not in scores


def test_overall_scores_by_hand_and_incomplete_entries():
    overall = overall_scores(arrange(RESULTS + [result("half", "ks", 0.65)]), "fbank")
    assert overall["ssl"] == (pytest.approx(1000.0), True)
    assert overall["rand"] == (pytest.approx((-200.0 + 500.0) / 2), True)
    assert overall["half"] == (pytest.approx(500.0), False)  # (0.65 - 0.4) / 0.5, asr missing


def test_no_entry_beats_the_floor_scores_zero():
    board = arrange([result("fbank", "ks", 0.5), result("ssl", "ks", 0.5)])
    assert task_scores(board, "fbank") == {("fbank", "ks"): 0.0, ("ssl", "ks"): 0.0}


def test_markdown_and_csv(tmp_path):
    board = arrange(RESULTS)
    text = markdown(board, "fbank")
    assert text.splitlines()[0].startswith("| upstream | ks ACC ↑ | asr wer ↓ | er ACC ↑")  # SUPERB's task order
    assert "| rand | 0.3 | 0.5 | - | 150 |" in text
    rows = list(csv.DictReader(io.StringIO(csv_text(board, "fbank"))))
    assert {(r["upstream"], r["task"]): r["task_score"] for r in rows}[("rand", "asr")] == "500.0"
    assert "No SUPERB score" in markdown(board, None)


def test_write_leaderboard_files(tmp_path):
    weighted = [result("ssl", "ks", 0.9, weights=[0.1, 0.7, 0.2]), result("fbank", "ks", 0.4)]
    write_leaderboard(weighted, tmp_path, "fbank")
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.png", "layer_weights.json", "layer_weights.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
