"""Reading audiossl checkpoints: find them in a run dir, load them safely, take only what is needed.

A checkpoint ``RUN_DIR/ckpt-<step>.pt`` (written by the training engine) holds the model
(objective with its encoder), the input pipeline's statistics, the config and everything needed
to resume a run (optimizer, scheduler, random states). Only tensors and plain Python types are
stored, so loading never unpickles arbitrary objects (``torch.load(weights_only=True)``).

:func:`read_checkpoint` is what model loading uses: the file is memory-mapped, so the entries a
caller does not ask for (the optimizer state, typically as large as the model twice over) are
never read into memory. :func:`load_checkpoint` reads everything (resuming a run needs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.fileio import (  # naming and the full read live in the leaf that the engine shares
    CHECKPOINT_FORMAT,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_weights_only,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "checkpoint_path",
    "init_from_checkpoint",
    "is_audiossl_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_checkpoint",
]


def resolve_checkpoint(path_or_run_dir: str | Path, what: str = "checkpoint") -> Path:
    """The checkpoint file ``path_or_run_dir`` names: itself, or a run dir's newest ``ckpt-*.pt``.

    ``what`` names the kind of checkpoint in the error for a run dir without one.
    """
    path = Path(path_or_run_dir)
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise DataError(f"no {what} (ckpt-*.pt) in this run dir", path)
        return newest
    return path


def is_audiossl_checkpoint(path_or_run_dir: str | Path) -> bool:
    """Whether ``path_or_run_dir`` is an audiossl checkpoint file or a run dir holding one (cheap: memory-mapped).

    ``run.init_from`` uses it to tell audiossl checkpoints from published ones (converted on load).
    """
    path = Path(path_or_run_dir)
    if path.is_dir():
        return latest_checkpoint(path) is not None
    if not path.is_file() or path.suffix in (".safetensors", ".yaml", ".yml", ".json"):
        return False
    try:
        state = read_weights_only(path, what="an audiossl checkpoint", mmap=True)
    except DataError:
        return False
    return isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT


def _check_format(state: Any, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"not an audiossl checkpoint of format {CHECKPOINT_FORMAT}", path)
    return state


def read_checkpoint(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The entries ``keys`` of a checkpoint (all when None, plus ``format``), read once, on the CPU.

    The file is memory-mapped (``torch.load(mmap=True, weights_only=True)``): tensors of entries
    that are not asked for (the optimizer state) are never read from disk. Tensors of the entries
    returned are backed by the file until copied (``load_state_dict`` copies). Requested keys the
    checkpoint lacks are simply absent from the result.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("checkpoint not found", path)
    # legacy (non-zip) files cannot be mapped: read_weights_only reads those whole
    state = read_weights_only(path, what="an audiossl checkpoint", mmap=True)
    return _select(_check_format(state, path), keys)


def _select(state: dict[str, Any], keys: Iterable[str] | None) -> dict[str, Any]:
    """The entries ``keys`` of ``state`` (and ``format``); all of them when ``keys`` is None."""
    if keys is None:
        return state
    wanted = {"format", *keys}
    return {key: value for key, value in state.items() if key in wanted}


def init_from_checkpoint(
    module: nn.Module, path_or_run_dir: str | Path, *, exclude: Sequence[str] = (), prefix: str = ""
) -> Path:
    """Load the model weights of a checkpoint (or a run dir's newest) into ``module``; the file read.

    ``prefix``: take only the checkpoint's ``model`` entries under it (``"encoder."`` for the
    encoder of a pretraining checkpoint), with the prefix removed. Entries whose (stripped) name
    starts with one of ``exclude`` are skipped on both sides (heads that change between runs,
    e.g. ``cluster.``). Any other missing or unexpected weight is a :class:`ConfigError`. Only
    the ``model`` entry is read: never the optimizer state.
    """
    source = resolve_checkpoint(path_or_run_dir)
    state = read_checkpoint(source, keys=("model",))
    if "model" not in state:
        raise DataError("checkpoint has no model weights", source)
    exclude = tuple(exclude)
    weights = {
        name[len(prefix) :]: value
        for name, value in state["model"].items()
        if name.startswith(prefix) and not name[len(prefix) :].startswith(exclude)
    }
    missing, unexpected = module.load_state_dict(weights, strict=False)
    missing = [name for name in missing if not name.startswith(exclude)]
    if missing or unexpected:
        raise ConfigError(
            f"checkpoint does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}", source
        )
    return source
