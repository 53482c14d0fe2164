"""Gumbel-softmax product quantizer (wav2vec 2.0, Baevski et al. 2020, section 2).

A linear layer scores ``G`` groups of ``V`` codebook entries for every frame; each group picks
one entry with a straight-through hard Gumbel-softmax (the forward pass uses the one-hot
choice, the backward pass the gradient of the soft sample), and the chosen entries of the
groups are concatenated. The Gumbel temperature decays geometrically with the optimizer
step down to a floor. The codebook diversity loss of wav2vec 2.0 pushes the batch-averaged
softmax of every group towards uniform use of its entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from audiossl.errors import ConfigError


@dataclass(kw_only=True)
class QuantizerConfig:
    """Product quantizer settings (defaults: wav2vec 2.0 BASE)."""

    groups: int = 2
    """Codebook groups G; one entry is chosen per group and the choices are concatenated."""

    entries: int = 320
    """Entries V per group."""

    code_dim: int = 256
    """Width of a quantized vector (all groups together); must be divisible by ``groups``."""

    max_temperature: float = 2.0
    """Gumbel temperature at step 0."""

    min_temperature: float = 0.5
    """Floor of the Gumbel temperature."""

    temperature_decay: float = 0.999995
    """Factor per optimizer step: ``temperature(step) = max(max_temperature * decay**step, min_temperature)``."""

    def __post_init__(self) -> None:
        if self.groups < 1 or self.entries < 2:
            raise ConfigError(f"quantizer needs groups >= 1 and entries >= 2, got {self.groups} x {self.entries}")
        if self.code_dim % self.groups != 0:
            raise ConfigError(f"quantizer code_dim {self.code_dim} is not divisible by groups {self.groups}")
        if not 0.0 < self.min_temperature <= self.max_temperature:
            raise ConfigError(
                f"quantizer temperatures need 0 < min <= max, got {self.min_temperature}, {self.max_temperature}"
            )
        if not 0.0 < self.temperature_decay <= 1.0:
            raise ConfigError(f"quantizer temperature_decay must be in (0, 1], got {self.temperature_decay}")


def gumbel_temperature(step: int | None, max_temperature: float, min_temperature: float, decay: float) -> float:
    """``max(max_temperature * decay**step, min_temperature)``; ``step=None`` counts as step 0."""
    step = 0 if step is None else step
    return max(max_temperature * math.exp(step * math.log(decay)), min_temperature)


def perplexity(probs: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over groups of ``exp(entropy)`` of the entry distribution averaged over valid frames.

    ``probs`` (B, S, G, V) per-frame distributions (soft or one-hot); ``valid`` (B, S) bool.
    Returns a scalar between G (every frame uses one entry) and G * V (uniform use).
    """
    probs = probs.float()
    if valid is None:
        valid = torch.ones(probs.shape[:2], dtype=torch.bool, device=probs.device)
    weights = valid.to(probs.dtype).unsqueeze(-1).unsqueeze(-1)  # (B, S, 1, 1)
    marginal = (probs * weights).sum(dim=(0, 1)) / weights.sum().clamp(min=1.0)  # (G, V)
    entropy = -(marginal * torch.log(marginal.clamp(min=1e-12))).sum(dim=-1)  # (G,)
    return torch.exp(entropy).sum()


@dataclass
class QuantizerOutput:
    """What :class:`GumbelVectorQuantizer` returns.

    ``quantized``: (B, S, code_dim) the chosen entries, groups concatenated.
    ``codes``: (B, S, G) long, the chosen entry of every group.
    ``logits``: (B, S, G, V) the entry scores.
    ``perplexity``: scalar, of the softmax averaged over valid frames (differentiable; the
    diversity loss uses it).
    ``code_perplexity``: scalar, of the chosen codes over valid frames (a health metric).
    ``temperature``: the Gumbel temperature used.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    logits: torch.Tensor
    perplexity: torch.Tensor
    code_perplexity: torch.Tensor
    temperature: float

    def diversity_loss(self, groups: int, entries: int) -> torch.Tensor:
        """wav2vec 2.0 diversity loss ``(G*V - perplexity) / (G*V)``: 0 at uniform use, near 1 at collapse."""
        total = groups * entries
        return (total - self.perplexity) / total


class GumbelVectorQuantizer(nn.Module):
    """Frames (B, S, input_dim) -> :class:`QuantizerOutput`.

    In training mode each group samples its entry with a straight-through hard Gumbel-softmax
    at the scheduled temperature; in eval mode it takes the arg-max entry.
    """

    def __init__(self, input_dim: int, config: QuantizerConfig):
        super().__init__()
        self.config = config
        self.groups = config.groups
        self.entries = config.entries
        self.logits = nn.Linear(input_dim, config.groups * config.entries)
        nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.logits.bias)
        self.codebook = nn.Parameter(torch.empty(config.groups, config.entries, config.code_dim // config.groups))
        nn.init.uniform_(self.codebook)

    def temperature(self, step: int | None) -> float:
        """The Gumbel temperature at optimizer ``step``."""
        config = self.config
        return gumbel_temperature(step, config.max_temperature, config.min_temperature, config.temperature_decay)

    def forward(
        self,
        frames: torch.Tensor,
        valid: torch.Tensor | None = None,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> QuantizerOutput:
        """Quantize ``frames`` (B, S, input_dim); ``valid`` (B, S) bool marks the frames perplexities count."""
        batch, length, _ = frames.shape
        logits = self.logits(frames).float().view(batch, length, self.groups, self.entries)  # (B, S, G, V)
        soft = logits.softmax(dim=-1)  # (B, S, G, V)
        temperature = self.temperature(step)
        if self.training:
            # Gumbel noise -log(E), E ~ Exponential(1), drawn from the optional generator.
            noise = -torch.empty_like(logits).exponential_(generator=generator).log()
            sample = ((logits + noise) / temperature).softmax(dim=-1)  # (B, S, G, V)
            codes = sample.argmax(dim=-1)  # (B, S, G)
            hard = torch.zeros_like(sample).scatter_(-1, codes.unsqueeze(-1), 1.0)
            one_hot = hard - sample.detach() + sample  # straight-through
        else:
            codes = logits.argmax(dim=-1)
            one_hot = torch.zeros_like(logits).scatter_(-1, codes.unsqueeze(-1), 1.0)
        quantized = torch.einsum("bsgv,gvd->bsgd", one_hot.to(self.codebook.dtype), self.codebook)  # (B, S, G, d)
        quantized = quantized.reshape(batch, length, -1)  # (B, S, code_dim)
        return QuantizerOutput(
            quantized=quantized,
            codes=codes,
            logits=logits,
            perplexity=perplexity(soft, valid),
            code_perplexity=perplexity(one_hot.detach(), valid),
            temperature=temperature,
        )
