from __future__ import annotations

import pytest

from audiossl.errors import ConfigError, UserError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.registry import Registry


def test_registry_lookup_and_errors():
    registry: Registry[int] = Registry("widget")
    registry.register("b")(2)
    registry.register("a")(1)
    assert registry.get("a") == 1
    assert registry.names() == ["a", "b"]
    assert "b" in registry and "c" not in registry
    with pytest.raises(ConfigError, match="unknown widget 'c'; known: a, b"):
        registry.get("c")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(3)


def test_user_error_names_file_and_line():
    assert str(UserError("bad", "x/text", 3)) == "x/text:3: bad"
    assert str(UserError("bad", "x/text")) == "x/text: bad"
    assert str(UserError("bad")) == "bad"


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind

    with atomic_write(target) as handle:
        handle.write("new")
    assert target.read_text(encoding="utf-8") == "new"


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "sub" / "blob.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert not target.exists()
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in target.parent.iterdir()) == ["blob.bin"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    with atomic_write(tmp_path / "atomic.txt") as handle:
        handle.write("x")
    with atomic_path(tmp_path / "blob.bin") as tmp:
        tmp.write_bytes(b"x")
    expected = stat.S_IMODE(os.stat(plain).st_mode)
    assert stat.S_IMODE(os.stat(tmp_path / "atomic.txt").st_mode) == expected
    assert stat.S_IMODE(os.stat(tmp_path / "blob.bin").st_mode) == expected
