"""Checkpoints, the writing half: atomic saves, pruning to the last N, ``best.pt``, random states.

A checkpoint ``RUN_DIR/ckpt-<step>.pt`` holds everything needed to continue a run exactly: the
unit's models and extra state, optimizer, scheduler and gradient-scaler states, the data
position, the random states of every process (python, numpy, torch, CUDA) and the config. Only
tensors and plain Python types are stored, so loading never unpickles arbitrary objects. Each
file is written to a temporary name beside it and renamed, so a crash or a kill during a save
leaves the previous checkpoint intact and never a half-written one under a checkpoint name.

Naming and reading live in the leaf :mod:`audiossl.fileio` (the model package reads them too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.errors import UserError
from audiossl.fileio import (
    CHECKPOINT_FORMAT,
    atomic_path,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)

logger = logging.getLogger(__name__)

BEST_NAME = "best.pt"

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_FORMAT",
    "NonFiniteWeightsError",
    "assert_finite",
    "checkpoint_path",
    "latest_checkpoint",
    "link_best",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "remove_stale_temporaries",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


class NonFiniteWeightsError(UserError):
    """A model with NaN or Inf weights was about to be checkpointed (it never is)."""


def assert_finite(module: torch.nn.Module) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the first parameter or buffer that is NaN or Inf.

    Sharded (FSDP) parameters are gathered one at a time, so every process must call this.
    """
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if hasattr(tensor, "full_tensor"):  # a DTensor shard: check the whole parameter on every process
            tensor = tensor.detach().full_tensor()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteWeightsError(f"refusing to checkpoint non-finite weights ({name} has NaN or Inf)")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file beside it, flushed to disk, then renamed)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
    return path


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest ``ckpt-*.pt``; return what was deleted."""
    removed = []
    for _, path in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else list_checkpoints(run_dir):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        removed.append(path)
    return removed


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete temporary files left by a save that was killed (``.ckpt-*`` / ``.best.pt*``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    stale = [p for p in run_dir.iterdir() if p.is_file() and p.name.startswith((".ckpt-", f".{BEST_NAME}."))]
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if stale:
        logger.info("removed %d temporary file(s) of an interrupted checkpoint save in %s", len(stale), run_dir)
    return stale


def link_best(checkpoint: Path, best: Path) -> None:
    """Make ``best`` the same file as ``checkpoint`` (a hard link, else a copy), replacing it atomically."""
    with atomic_path(best) as tmp:
        tmp.unlink()
        try:
            os.link(checkpoint, tmp)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            shutil.copyfile(checkpoint, tmp)


# ----------------------------------------------------------------------------- random states


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA random states as tensors and plain types (``weights_only``-safe)."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss"]))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
