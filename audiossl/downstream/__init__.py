"""Downstream tasks on pretrained encoders: upstream, layer mix, pooling, task contract, trainer, plugins.

A plugin (an installed distribution, entry-point group ``audiossl.plugins``) provides a
:class:`Plugin` whose task implements :class:`DownstreamTask`; :func:`train_downstream` and
:func:`evaluate_downstream` run any task on any :class:`Upstream`. See docs/plugins.md.

Names are imported lazily (PEP 562): the CLI discovers plugins at every start-up, and
``from audiossl.downstream import Plugin`` must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> submodule defining it.
_EXPORTS = {
    "WeightedLayerSum": "featurizer",
    "mean_pool": "featurizer",
    "ENTRY_POINT_GROUP": "plugin",
    "STRICT_ENV": "plugin",
    "Plugin": "plugin",
    "PluginError": "plugin",
    "discover_plugins": "plugin",
    "get_plugin": "plugin",
    "strict_plugins": "plugin",
    "POOLINGS": "pooling",
    "AttentiveStatsPool": "pooling",
    "MeanPool": "pooling",
    "PooledNorm": "pooling",
    "StatsPool": "pooling",
    "create_pooling": "pooling",
    "DownstreamTask": "task",
    "TaskState": "task",
    "check_labels": "task",
    "eval_batches": "task",
    "label_file": "task",
    "DownstreamConfig": "trainer",
    "DownstreamModel": "trainer",
    "DownstreamResult": "trainer",
    "evaluate_downstream": "trainer",
    "load_downstream": "trainer",
    "read_run_info": "trainer",
    "train_downstream": "trainer",
    "FbankBaseline": "upstream",
    "Upstream": "upstream",
    "load_encoder": "upstream",
    "load_upstream": "upstream",
}

__all__ = [
    "AttentiveStatsPool",
    "DownstreamConfig",
    "DownstreamModel",
    "DownstreamResult",
    "DownstreamTask",
    "ENTRY_POINT_GROUP",
    "FbankBaseline",
    "MeanPool",
    "POOLINGS",
    "Plugin",
    "PooledNorm",
    "PluginError",
    "STRICT_ENV",
    "StatsPool",
    "TaskState",
    "Upstream",
    "WeightedLayerSum",
    "check_labels",
    "create_pooling",
    "discover_plugins",
    "eval_batches",
    "evaluate_downstream",
    "get_plugin",
    "label_file",
    "load_downstream",
    "load_encoder",
    "load_upstream",
    "mean_pool",
    "read_run_info",
    "strict_plugins",
    "train_downstream",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from audiossl.downstream.featurizer import WeightedLayerSum, mean_pool
    from audiossl.downstream.plugin import (
        ENTRY_POINT_GROUP,
        STRICT_ENV,
        Plugin,
        PluginError,
        discover_plugins,
        get_plugin,
        strict_plugins,
    )
    from audiossl.downstream.pooling import (
        POOLINGS,
        AttentiveStatsPool,
        MeanPool,
        PooledNorm,
        StatsPool,
        create_pooling,
    )
    from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches, label_file
    from audiossl.downstream.trainer import (
        DownstreamConfig,
        DownstreamModel,
        DownstreamResult,
        evaluate_downstream,
        load_downstream,
        read_run_info,
        train_downstream,
    )
    from audiossl.downstream.upstream import FbankBaseline, Upstream, load_encoder, load_upstream
