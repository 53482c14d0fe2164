"""The encoder interface: config dataclass + factory + module returning :class:`EncoderOutput`.

Every encoder (AST, BiMamba, Conformer, ...) takes padded features with their lengths and
returns typed hidden states for every layer, so any objective and any downstream plugin
can sit on any encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from audiossl.registry import Registry


@dataclass
class EncoderOutput:
    """What every encoder returns.

    ``last``: final hidden states (B, S, D), after the final norm.
    ``layers``: hidden states after every block, L tensors of (B, S, D) (``layers[-1]`` is
    the last block before the final norm).
    ``lengths``: valid tokens per item (B,).
    ``padding_mask``: (B, S) bool, True at padding positions.
    ``kept_indices``: (B, K) when the encoder was given ``keep_indices`` (masked tokens
    dropped before the encoder), else None; S == num_prefix_tokens + K then.
    ``num_prefix_tokens``: leading positions of every item that are not input tokens (AST's
    cls/dist tokens). They are part of ``last``, ``layers``, ``lengths`` and ``padding_mask``
    (never padding); input token ``s`` sits at position ``num_prefix_tokens + s``.
    :meth:`without_prefix` strips them, e.g. to line tokens up with masked-prediction targets.
    """

    last: torch.Tensor
    layers: list[torch.Tensor]
    lengths: torch.Tensor
    padding_mask: torch.Tensor
    kept_indices: torch.Tensor | None = None
    num_prefix_tokens: int = 0

    def prefix(self) -> torch.Tensor:
        """The prefix (cls) tokens of ``last``: (B, num_prefix_tokens, D)."""
        return self.last[:, : self.num_prefix_tokens]

    def without_prefix(self) -> EncoderOutput:
        """The same output with the prefix positions removed (S -> S - num_prefix_tokens)."""
        n = self.num_prefix_tokens
        if n == 0:
            return self
        return EncoderOutput(
            last=self.last[:, n:],
            layers=[layer[:, n:] for layer in self.layers],
            lengths=self.lengths - n,
            padding_mask=self.padding_mask[:, n:],
            kept_indices=self.kept_indices,
            num_prefix_tokens=0,
        )


class Encoder(nn.Module):
    """Base class: ``forward(features, lengths, mask=None, keep_indices=None) -> EncoderOutput``.

    ``features`` (B, F, C) are frames x channels (e.g. fbank bins), or (B, T) waveforms for
    waveform encoders; ``lengths`` (B,) are valid frames (samples). ``mask`` (B, S) bool
    replaces those tokens by a learned mask embedding; ``keep_indices`` (B, K) keeps only
    those tokens (MAE-style, ``-1``-padded, see :func:`audiossl.encoders.embed.gather_kept`).
    At most one of them is given. Both index the S input tokens of :meth:`token_lengths`
    (prefix tokens excluded).

    Encoders built on :class:`audiossl.encoders.embed.TokenEmbedding` (all of ours) keep it as
    ``self.embedding`` and their configs have ``input: InputConfig`` and ``dim: int`` fields,
    which is what the shared tests and :mod:`audiossl.testing.configs` rely on.
    """

    #: Width D of the hidden states.
    dim: int
    #: Number of blocks L (len(EncoderOutput.layers)).
    num_layers: int
    #: Leading non-input positions in the output (cls tokens); see EncoderOutput.
    num_prefix_tokens: int = 0

    def token_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Input tokens (what ``mask`` / ``keep_indices`` index) for inputs of ``lengths`` frames (B,).

        The output has ``num_prefix_tokens`` more positions per item.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class EncoderSpec:
    """A registered encoder family: its config class, factory and named presets."""

    name: str
    config_class: type
    factory: Callable[..., Encoder]
    presets: dict[str, Callable[[], object]]


#: Registry of encoder families by name ("ast", "mamba", "conformer", ...).
ENCODERS: Registry[EncoderSpec] = Registry("encoder")


def create_encoder(name: str, preset: str | None = None, config: object | None = None) -> Encoder:
    """Build an encoder by family name, from a named preset or an explicit config."""
    spec = ENCODERS.get(name)
    if config is None:
        preset = preset or "tiny"
        if preset not in spec.presets:
            from audiossl.errors import ConfigError

            raise ConfigError(f"unknown preset {preset!r} for encoder {name!r}; known: {', '.join(spec.presets)}")
        config = spec.presets[preset]()
    return spec.factory(config)
