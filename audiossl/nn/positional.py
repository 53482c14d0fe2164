"""Positional information that works at any sequence length and never looks at padding.

Two kinds, both length-agnostic so no input length is baked into a model:

- :func:`sinusoidal_encoding`: the fixed sine/cosine code of Vaswani et al. (2017) for integer
  positions; it depends only on the position index, never on the batch's padded length.
- :class:`ConvPositionalEmbedding`: a grouped convolution over the sequence whose output is
  added to its input (wav2vec 2.0, Baevski et al. 2020). It carries relative position; padding
  is zeroed before the convolution so a padded item sees exactly what it would see alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Sine/cosine code of integer ``positions`` (any shape) -> (*positions.shape, dim), fp32.

    Channel ``2i`` is ``sin(p / base^(2i/dim))`` and ``2i+1`` the matching cosine; an odd
    ``dim`` drops the last cosine.
    """
    half = (dim + 1) // 2
    frequencies = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32) * (-math.log(base) * 2.0 / dim)
    )  # (half,)
    angles = positions.to(torch.float32).unsqueeze(-1) * frequencies  # (..., half)
    code = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (..., 2 * half)
    return code[..., :dim]


class ConvPositionalEmbedding(nn.Module):
    """``x + GELU(conv(x))`` with a wide grouped convolution over time (wav2vec 2.0 style).

    The convolution is "same"-padded (an even kernel drops the last output, as in wav2vec 2.0)
    and weight-normalised over the kernel dimension. Padding positions are zeroed before the
    convolution and in the output, so valid outputs equal those of the item alone.
    """

    def __init__(self, dim: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        if dim % groups != 0:
            raise ValueError(f"conv positional embedding: dim {dim} is not divisible by groups {groups}")
        self.kernel_size = kernel_size
        conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)
        # Initialisation as in wav2vec 2.0: normal with std sqrt(4 / (kernel * dim)), zero bias.
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel_size * dim)))
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, T, D), ``padding_mask`` (B, T) True at padding -> (B, T, D)."""
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        length = x.shape[1]
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN's bf16 grouped conv1d returns wrong values on AMX CPUs for some group widths
            # (8 channels a group: relative error > 1 with torch 2.9.1); this small conv runs in fp32.
            with torch.autocast("cpu", enabled=False):
                position = self.conv(x.float().transpose(1, 2))[..., :length]  # (B, D, T)
        else:
            position = self.conv(x.transpose(1, 2))[..., :length]  # (B, D, T)
        out = x + self.activation(position).transpose(1, 2)  # (B, T, D)
        if padding_mask is not None:
            out = out.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return out
