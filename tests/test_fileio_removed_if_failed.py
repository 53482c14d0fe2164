"""fileio.removed_if_failed: a command failing before its work started leaves no output behind."""

from __future__ import annotations

import pytest

from audiossl.fileio import removed_if_failed


def test_removes_what_it_created_and_keeps_what_existed_or_started(tmp_path, monkeypatch):
    with pytest.raises(ValueError), removed_if_failed(tmp_path / "new" / "nested" / "out") as out:
        out.mkdir(parents=True)
        (out / "settings.json").write_text("{}")
        raise ValueError("bad input")
    assert not (tmp_path / "new").exists()  # the folders made for it go too

    monkeypatch.chdir(tmp_path)  # a relative path
    with pytest.raises(ValueError), removed_if_failed("rel") as out:
        out.mkdir()
        raise ValueError
    assert not (tmp_path / "rel").exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(ValueError), removed_if_failed(kept):
        (kept / "partial").write_text("x")
        raise ValueError
    assert kept.is_dir()  # it existed before: not ours to remove

    with pytest.raises(ValueError), removed_if_failed(tmp_path / "run", started=lambda p: (p / "ckpt").exists()) as run:
        run.mkdir()
        (run / "ckpt").write_text("x")
        raise ValueError
    assert (tmp_path / "run" / "ckpt").is_file()  # resumable work stays

    with removed_if_failed(tmp_path / "ok") as out:
        out.mkdir()
    assert out.is_dir()  # success: untouched
