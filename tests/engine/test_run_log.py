"""train.jsonl after a resume: cut back to the restored step, atomically."""

from __future__ import annotations

import json

from audiossl.engine import truncate_records


def test_truncate_records_keeps_steps_up_to_the_restored_one(tmp_path):
    path = tmp_path / "train.jsonl"
    records = [
        {"kind": "event", "event": "start", "step": 0},
        *({"kind": "train", "step": step, "loss": 1.0 / step} for step in (1, 2, 3, 4)),
        {"kind": "valid", "step": 2, "loss": 0.5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "train", "st')  # a line cut by a kill
    assert truncate_records(path, 2) == 3
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in kept] == [("event", 0), ("train", 1), ("train", 2), ("valid", 2)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_truncate_records_leaves_a_complete_log_alone(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"kind": "train", "step": 1}\n')
    before = path.stat().st_mtime_ns
    assert truncate_records(path, 5) == 0
    assert path.stat().st_mtime_ns == before
    assert truncate_records(tmp_path / "missing.jsonl", 1) == 0
