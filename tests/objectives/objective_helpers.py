"""Helpers for objective tests: tiny encoders of every registered family, padded inputs, a mask spy."""

from __future__ import annotations

import torch

from audiossl.encoders import ENCODERS, Encoder, create_encoder
from audiossl.testing.configs import dummy_encoder_inputs, tiny_encoder_config

#: Every registered encoder family; objective tests are parameterised over it.
FAMILIES = ENCODERS.names()


def tiny_encoder(family: str, kind: str, seed: int = 0) -> Encoder:
    """A tiny ``family`` encoder reading ``kind`` tokens, with seeded weights."""
    torch.manual_seed(seed)
    return create_encoder(family, config=tiny_encoder_config(family, kind))


def inputs_for(encoder: Encoder, lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random padded inputs for ``encoder`` (padding holds 100.0 so leaks show)."""
    return dummy_encoder_inputs(encoder.config.input, lengths, seed=seed)


class MaskSpy:
    """Records the ``mask`` every call of ``encoder`` receives."""

    def __init__(self, encoder: Encoder):
        self.masks: list[torch.Tensor] = []
        self.handle = encoder.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):  # noqa: ANN001
        self.masks.append(kwargs.get("mask"))

    def close(self) -> None:
        self.handle.remove()


def train_losses(
    objective: torch.nn.Module, features, lengths, steps: int, lr: float, seed: int = 0
) -> dict[str, list[float]]:
    """Adam on one fixed batch with the same mask every step -> {"total": [...], part: [...]} per step."""
    optimizer = torch.optim.Adam(objective.parameters(), lr=lr)
    history: dict[str, list[float]] = {}
    for step in range(steps):
        generator = torch.Generator().manual_seed(seed)  # same mask (and noise) every step
        out = objective(features, lengths, step=step, generator=generator)
        assert torch.isfinite(out.total), f"non-finite loss at step {step}"
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        for name, value in {"total": out.total, **out.parts}.items():
            history.setdefault(name, []).append(float(value.detach()))
    return history


def decreased(values: list[float], factor: float) -> bool:
    """The mean of the last five values is below ``factor`` times the first."""
    return sum(values[-5:]) / 5 < factor * values[0]
