"""Atomic writes (every file audiossl writes appears whole or not at all), output checks and checkpoint file naming."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from audiossl.errors import DataError, UserError


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


# ----------------------------------------------------------------------------- output checks
# Every command that writes checks up front that it can (before any work is done), so a read-only
# filesystem or a missing permission is one line naming the path, not a traceback at the end of a run.

_write_log = logging.getLogger("audiossl.fileio")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder a mkdir would start from)."""
    current = path
    while not (current.exists() or current.is_symlink()) and current.parent != current:
        current = current.parent
    return current


def _probe(folder: Path, target: Path, what: str) -> None:
    """Create and delete a temporary file in ``folder``; raise a UserError naming ``target`` if it cannot."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".audiossl-write-check.", dir=folder)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = "" if folder == target else f" (in {folder})"
        raise UserError(f"cannot write {what} here: {reason}{where}", target) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def ensure_writable_dir(
    path: str | Path, *, create: bool = False, what: str = "the output", warn_existing: bool = False
) -> Path:
    """Check that the output dir ``path`` can be written; return it as a Path.

    ``path`` must be a directory or not exist yet, and files must be creatable in it (or, when
    it does not exist, in its nearest existing ancestor, which must be a directory). The check
    writes and deletes one temporary file, so it fails on a read-only filesystem or without
    write permission, before any work is done. ``create`` makes the dir (with its parents)
    first; otherwise nothing is left behind, so a command that refuses an existing output can
    still tell a dir it made from one the user made. ``warn_existing`` logs a warning when
    ``path`` already holds files (a command that writes tables into it replaces those of the
    same name and leaves the others). Raises :class:`UserError` naming the path and the reason.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} must be a directory, and this is a file", path)
    if warn_existing and path.is_dir() and any(path.iterdir()):
        _write_log.warning(
            "%s already holds files: those written now replace the ones of the same name; the others stay", path
        )
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"cannot create {what} directory: {existing} is a file, not a directory", path)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create {what} directory: {error.strerror or error}", path) from None
        existing = path
    _probe(existing, path, what)
    return path


def ensure_writable_file(path: str | Path, *, what: str = "the output", replace: bool = True) -> Path:
    """Check that the output file ``path`` can be written (its folder is, or can be made, writable).

    ``path`` must not be a directory. An existing file is replaced with a logged warning
    (``replace``), or refused with a :class:`UserError` when ``replace`` is False. Raises
    :class:`UserError` naming the path and the reason; leaves nothing behind.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} must be a file, and this is a directory", path)
    if path.exists() or path.is_symlink():
        if not replace:
            raise UserError(f"{what} file exists; remove it or choose another path", path)
        _write_log.warning("%s exists and will be replaced", path)
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise UserError(f"cannot write {what} file: {existing} is a file, not a directory", path)
    _probe(existing, path, what)
    return path


@contextlib.contextmanager
def removed_if_failed(path: str | Path, started: Callable[[Path], bool] = lambda path: False) -> Iterator[Path]:
    """Remove the output ``path`` (and the folders made for it) when the block fails before its work started.

    A command that fails on bad input must leave no half-written output: if ``path`` did not exist
    when the block began, the block raises, and ``started(path)`` is False (no finished chunk, no
    checkpoint: nothing a rerun or ``--resume`` could use), the folders this block created are
    deleted. Output that existed before, or work that can be resumed, is kept.
    """
    path = Path(path)
    target = path.absolute()
    existing = _nearest_existing(target)
    try:
        yield path
    except BaseException:
        if existing != target and not (path.exists() and started(path)):
            created = existing / target.relative_to(existing).parts[0]
            if created.is_dir() and not created.is_symlink():
                shutil.rmtree(created, ignore_errors=True)
            elif created.exists():
                created.unlink(missing_ok=True)
        raise


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
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    state = read_weights_only(path, what="an audiossl checkpoint", map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not an audiossl checkpoint of format {CHECKPOINT_FORMAT}", path)
    return state


# ----------------------------------------------------------------------------- reading torch files safely
# The pickle policy (docs/reliability.md): a file a user hands us is read as data only, never as code.
# torch files go through read_weights_only (torch.load(weights_only=True): tensors, containers and plain
# Python values; any other class is refused before it is built), numpy files with allow_pickle=False,
# everything else as safetensors, JSON or text. When torch refuses a file, its own message is not shown:
# it advises re-running torch.load with weights_only=False, the one thing not to do with a suspicious
# file. The refusal says instead what the file is not, and names it.

log = logging.getLogger(__name__)

#: Globals torch rebuilds in any weights-only file (naming them would not explain a refusal).
_PLAIN_GLOBALS = ("torch.", "collections.OrderedDict", "collections.Counter", "_codecs.encode")
_PLAIN_BUILTINS = {
    f"{module}.{name}" for module in ("builtins", "__builtin__") for name in ("set", "complex", "bytearray")
}


def read_weights_only(
    path: str | Path,
    *,
    what: str = "an audiossl checkpoint",
    map_location: Any = "cpu",
    mmap: bool = False,
    safe_globals: Sequence[Any] = (),
) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is a :class:`DataError` naming ``path``.

    ``what`` says what the file should have been ("an audiossl checkpoint", "a segmentation
    model"); the message (:func:`not_plain_data`) never carries torch's own text. ``mmap``
    memory-maps zip-format files (older torch files cannot be mapped: they are read whole).
    ``safe_globals`` are extra classes allowed to be rebuilt (``torch.serialization.safe_globals``
    entries): only pure-data classes, whose construction runs no code of the file's choosing.
    """
    import torch  # here, not at the top: this leaf is imported by light modules that need no torch

    path = Path(path)
    if path.is_dir():
        raise DataError(f"a directory, not {what}", path)
    if not path.is_file():
        raise DataError(f"{what} not found", path)
    if mmap and not zipfile.is_zipfile(path):
        mmap = False
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's warnings about the pickle are not the user's business
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for truncated, foreign or pickled-code files
        log.debug("%s: torch.load(weights_only=True) failed: %s: %s", path, type(error).__name__, error)
        raise DataError(not_plain_data(path, what, safe_globals), path) from None


def load_npy(path: str | Path, *, what: str = "a numpy array file", mmap_mode: str | None = None) -> Any:
    """``numpy.load(path, allow_pickle=False)``: arrays of numbers only; anything else is a DataError naming ``path``.

    An ``.npy`` of Python objects is a pickle: numpy refuses it without ``allow_pickle``, and so
    do we, saying so instead of numpy's advice to allow pickles.
    """
    import numpy as np  # here: this leaf is imported by light modules

    path = Path(path)
    try:
        return np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except Exception as error:  # numpy raises ValueError, OSError, EOFError... for foreign or truncated files
        log.debug("%s: numpy.load(allow_pickle=False) failed: %s: %s", path, type(error).__name__, error)
        raise DataError(
            f"not {what} readable as plain numbers (allow_pickle=False); it may be truncated, corrupt, or hold "
            "pickled Python objects, which audiossl never unpickles",
            path,
        ) from None


def not_plain_data(path: str | Path, what: str, safe_globals: Sequence[Any] = ()) -> str:
    """The refusal of a file that ``torch.load(weights_only=True)`` cannot read, in audiossl's words.

    Says what the file is not and, where a static look at its pickle (which runs nothing) can
    tell, why: empty, a TorchScript program, or the Python objects it would need to build.
    """
    head = f"not {what} readable as plain data (weights_only)"
    reason = _why_not_plain_data(Path(path), {_global_name(g) for g in safe_globals})
    if reason:
        return f"{head}: {reason}; audiossl never unpickles code from a file"
    return f"{head}; it may be truncated, corrupt, or contain pickled code, which audiossl never runs"


def _global_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f"{entry.__module__}.{entry.__qualname__}"


def _why_not_plain_data(path: Path, allowed: set[str]) -> str | None:
    """A reason found without unpickling anything, or None when none can be told."""
    import pickletools

    try:
        if path.stat().st_size == 0:
            return "the file is empty"
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if any("/code/" in name for name in names) or any(n.endswith("constants.pkl") for n in names):
                    return "it is a TorchScript program (code), not weights"
                data = [name for name in names if name.endswith("data.pkl")]
                if not data:
                    return None
                payload = archive.read(data[0])
        else:
            with open(path, "rb") as handle:
                payload = handle.read(64 << 20)
    except Exception:  # unreadable file, truncated zip: nothing more to say than the generic reason
        return None
    found: list[str] = []
    stream = io.BytesIO(payload)
    with contextlib.suppress(Exception):  # a truncated pickle, or raw tensor bytes after the pickles of an old file
        while stream.tell() < len(payload):  # old torch files are several pickles in a row
            _pickle_globals(pickletools.genops(stream), found)
    foreign = sorted({n for n in found if not n.startswith(_PLAIN_GLOBALS) and n not in _PLAIN_BUILTINS | allowed})
    if not foreign:
        return None
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    return f"it holds pickled Python objects ({shown}), which could run code when unpickled"


def _pickle_globals(ops: Iterator, found: list[str]) -> None:
    """Append to ``found`` the ``module.name`` of every global one pickle refers to (a static walk: nothing runs)."""
    pushed: list[str | None] = []  # what the last opcodes pushed (strings; None for anything else)
    memo: dict[int, str | None] = {}
    for opcode, arg, _ in ops:
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            if len(pushed) >= 2 and pushed[-2] is not None and pushed[-1] is not None:
                found.append(f"{pushed[-2]}.{pushed[-1]}")
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(int(arg)))
        elif "UNICODE" in name or name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            pushed.append(str(arg))
        elif opcode.stack_after:
            pushed.append(None)
