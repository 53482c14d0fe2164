"""Encoders too large for DDP: FSDP2 (``fully_shard``), per-block activation checkpointing and compile.

:func:`prepare_blocks` turns the options on for every :class:`~audiossl.encoders.base.Encoder`
inside a unit's model (each encoder calls its blocks through ``Encoder.run_block``);
:func:`fully_shard_model` shards each encoder block, then the rest of the model, over all
processes (PyTorch's FSDP2: parameters become DTensors sharded on dim 0; a block's parameters
are all-gathered just before it runs and its gradients reduce-scattered after its backward).

Checkpoints stay *full*: :func:`full_state` all-gathers every DTensor of a checkpoint dict (on
every process, tensor by tensor; only the main process keeps them), so an FSDP checkpoint is the
same file as a DDP or one-process checkpoint, readable by ``audiossl extract`` and resumable
under any launch. :func:`shard_optimizer_state` splits a full optimizer state back into the
shards of the parameters it belongs to (locally: every process read the same file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

logger = logging.getLogger("audiossl.engine")


def _dtensor_class() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return None
    return DTensor


def is_dtensor(value: Any) -> bool:
    """Whether ``value`` is a DTensor (a sharded parameter, gradient or optimizer state)."""
    dtensor = _dtensor_class()
    return dtensor is not None and isinstance(value, dtensor)


def encoders_in(model: nn.Module) -> Iterator[nn.Module]:
    """The encoders inside ``model`` (outermost first): modules with ``block_modules`` and ``configure_blocks``.

    Recognised by those two methods of :class:`audiossl.encoders.base.Encoder` rather than by
    class, so the engine stays below the encoders in the package's layering.
    """
    return (
        module
        for module in model.modules()
        if callable(getattr(module, "block_modules", None)) and callable(getattr(module, "configure_blocks", None))
    )


def prepare_blocks(
    model: nn.Module, *, activation_checkpointing: bool, compile: bool, compile_backend: str = "inductor"
) -> int:
    """Switch per-block activation checkpointing / ``torch.compile`` on in every encoder of ``model``.

    Returns the number of blocks concerned (0: the model has no encoder, the options do nothing).
    """
    blocks = 0
    for encoder in encoders_in(model):
        encoder.configure_blocks(
            activation_checkpointing=activation_checkpointing, compile=compile, compile_backend=compile_backend
        )
        blocks += len(encoder.block_modules())
    return blocks


def fully_shard_model(model: nn.Module) -> nn.Module:
    """Shard ``model`` over the default process group: each encoder block, then the rest (in place)."""
    from torch.distributed.fsdp import fully_shard

    blocks = [block for encoder in encoders_in(model) for block in encoder.block_modules()]
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    if torch.distributed.get_rank() == 0:
        logger.info(
            "FSDP: %d encoder block(s) and the rest of the model sharded over %d processes",
            len(blocks),
            torch.distributed.get_world_size(),
        )
    return model


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """FSDP: reduce-scatter gradients after this backward (False while accumulating micro-batches)."""
    model.set_requires_gradient_sync(enabled)


def full_state(value: Any, keep: bool) -> Any:
    """``value`` (nested dicts/lists of a checkpoint) with every DTensor all-gathered to a full tensor.

    Every process must call it on the same structure (the gathers are collectives, in dict order);
    with ``keep`` False the gathered tensors are dropped at once (non-main processes).
    """
    if is_dtensor(value):
        full = value.detach().full_tensor()
        return full.cpu() if keep else None
    if isinstance(value, dict):
        return {key: full_state(item, keep) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(full_state(item, keep) for item in value)
    return value


def shard_optimizer_state(state: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A full optimizer ``state_dict`` with each tensor of a DTensor parameter's shape split like it.

    Parameters are matched by position (the ``params`` lists of the saved and current groups), as
    :meth:`torch.optim.Optimizer.load_state_dict` does; scalar states (``step``) stay as they are.
    """
    from torch.distributed.tensor import distribute_tensor

    saved_groups = state["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        return state  # load_state_dict raises the mismatch itself
    by_index: dict[Any, nn.Parameter] = {}
    for saved, current in zip(saved_groups, optimizer.param_groups, strict=True):
        by_index.update(zip(saved["params"], current["params"], strict=False))
    sharded: dict[Any, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        param = by_index.get(index)
        sharded[index] = dict(entries)
        if param is None or not is_dtensor(param):
            continue
        for name, tensor in entries.items():
            if isinstance(tensor, torch.Tensor) and not is_dtensor(tensor) and tensor.shape == param.shape:
                local = tensor.detach().to(param.device)
                sharded[index][name] = distribute_tensor(local, param.device_mesh, param.placements, src_data_rank=None)
    return {**state, "state": sharded}


def norm_value(norm: torch.Tensor) -> float:
    """A gradient norm as a float (FSDP returns a DTensor partial over the shards: reduce it)."""
    if is_dtensor(norm):
        norm = norm.full_tensor()
    return float(norm)
