"""Atomic writes (every file audiossl writes appears whole or not at all) and checkpoint file naming."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from audiossl.errors import DataError


def _default_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 less the umask (mkstemp uses 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | Path) -> contextlib.AbstractContextManager[Path]:
    """Yield a temporary path beside ``path`` for libraries that write by file name."""

    @contextlib.contextmanager
    def manager() -> Iterator[Path]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix or ".tmp", dir=target.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, _default_mode())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    return manager()


# ----------------------------------------------------------------------------- checkpoint files
# Naming and reading of ``RUN_DIR/ckpt-<step>.pt`` sit in this leaf because both the engine, which
# writes and resumes them, and the model package, which loads trained encoders from them, need them.

#: Bumped when the layout of a checkpoint changes.
CHECKPOINT_FORMAT = 1

_CHECKPOINT_NAME = re.compile(r"ckpt-(?P<step>\d+)\.pt")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``RUN_DIR/ckpt-<step, 8 digits>.pt``."""
    return Path(run_dir) / f"ckpt-{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Every ``ckpt-<step>.pt`` of ``run_dir`` as (step, path), oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for path in run_dir.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match["step"]), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a whole checkpoint with ``weights_only=True``; a missing or foreign file is a DataError."""
    import torch  # here, not at the top: this leaf is imported by light modules that need no torch

    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise DataError(f"cannot read the checkpoint: {error}", path) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not an audiossl checkpoint of format {CHECKPOINT_FORMAT}", path)
    return state
