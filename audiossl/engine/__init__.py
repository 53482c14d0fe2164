"""The one training engine: run dirs, seeding, optimisers, autocast, DDP, checkpoints and logs.

Pretraining (:mod:`audiossl.train`), downstream tasks (:mod:`audiossl.downstream`) and the
vocoder of the vc plugin are *units* plugged into the same :class:`Engine`: a unit turns a
batch into a :class:`~audiossl.nn.outputs.LossOutput` and declares its step hooks; the engine
does everything else.
"""

from __future__ import annotations

from audiossl.engine.budget import TIME_BUDGET, TimeBudget
from audiossl.engine.checkpoint import (
    BEST_NAME,
    NonFiniteWeightsError,
    assert_finite,
    link_best,
    prune_checkpoints,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    seed_all,
    set_rng_state,
)
from audiossl.engine.distributed import DistInfo, all_gather_objects, all_reduce, barrier, broadcast_object
from audiossl.engine.engine import STOP_EXIT_CODES, Engine, EngineResult, NonFiniteLossError, open_run_dir
from audiossl.engine.logging import LossEMA, RunLogger, WindowMeter, plot_loss_curve, read_records, truncate_records
from audiossl.engine.optim import lr_factor, no_weight_decay, parameter_groups
from audiossl.engine.unit import EngineConfig, TrainUnit

__all__ = [
    "BEST_NAME",
    "STOP_EXIT_CODES",
    "TIME_BUDGET",
    "TimeBudget",
    "DistInfo",
    "Engine",
    "EngineConfig",
    "EngineResult",
    "NonFiniteLossError",
    "TrainUnit",
    "LossEMA",
    "NonFiniteWeightsError",
    "RunLogger",
    "WindowMeter",
    "all_gather_objects",
    "all_reduce",
    "assert_finite",
    "barrier",
    "broadcast_object",
    "link_best",
    "lr_factor",
    "no_weight_decay",
    "open_run_dir",
    "parameter_groups",
    "plot_loss_curve",
    "prune_checkpoints",
    "read_records",
    "remove_stale_temporaries",
    "rng_state",
    "save_checkpoint",
    "seed_all",
    "set_rng_state",
    "truncate_records",
]
