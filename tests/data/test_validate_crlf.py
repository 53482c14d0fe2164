"""CRLF tables: audiossl reads them, `data validate` reports them (Kaldi would not), `data fix` rewrites them."""

from __future__ import annotations

from _datadir_factory import make_data_dir

from audiossl.data.kaldi import read_table
from audiossl.data.validate import fix_data_dir, validate_data_dir


def test_crlf_tables_are_reported_and_fixed(tmp_path):
    data = make_data_dir(tmp_path)
    text = data / "text"
    text.write_bytes(text.read_bytes().replace(b"\n", b"\r\n"))
    assert read_table(text) == read_table(data / "text")  # read as if LF
    problems = [str(p) for p in validate_data_dir(data)]
    assert any(f"{text}:1" in p and "CRLF" in p for p in problems), problems
    changes = fix_data_dir(data)
    assert any("CRLF" in change for change in changes), changes
    assert b"\r" not in text.read_bytes()
    assert not [str(p) for p in validate_data_dir(data)]
