"""Checkpoints: written atomically, loadable with ``torch.load(weights_only=True)``, pruned to the last N.

A checkpoint ``RUN_DIR/ckpt-<step>.pt`` holds everything needed to continue a run exactly: the
model (objective with its encoder), the input pipeline's statistics, optimizer, scheduler and
gradient-scaler states, the sampler position, the random states of every process (python,
numpy, torch, CUDA) and the config. Only tensors and plain Python types are stored, so loading
never unpickles arbitrary objects. Each file is written to a temporary name beside it and
renamed, so a crash or a kill during a save leaves the previous checkpoint intact and never a
half-written one under a checkpoint name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.errors import DataError, UserError
from audiossl.fileio import atomic_path

logger = logging.getLogger(__name__)

#: Bumped when the layout of a checkpoint changes.
CHECKPOINT_FORMAT = 1

_NAME = re.compile(r"ckpt-(?P<step>\d+)\.pt")
BEST_NAME = "best.pt"


class NonFiniteWeightsError(UserError):
    """A model with NaN or Inf weights was about to be checkpointed (it never is)."""


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
        match = _NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match["step"]), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def assert_finite(module: torch.nn.Module) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the first parameter or buffer that is NaN or Inf."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing or foreign file is a :class:`DataError`."""
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
