"""Deprecated: checkpoints moved; kept for one release.

Writing (saves, pruning, ``best.pt``, random states) moved to :mod:`audiossl.engine.checkpoint`;
naming and reading to the leaf :mod:`audiossl.fileio` (the model package re-exports them).
"""

from __future__ import annotations

import torch  # noqa: F401  (tests patch ``checkpoint.torch.save``)

# writing half
from audiossl.engine.checkpoint import (
    BEST_NAME,
    NonFiniteWeightsError,
    assert_finite,
    link_best,
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

# reading half (naming, full read)
from audiossl.fileio import CHECKPOINT_FORMAT, checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint

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
