"""The encoder interface: config dataclass + factory + module returning :class:`EncoderOutput`.

Every encoder (AST, BiMamba, Conformer, ...) takes padded features with their lengths and
returns typed hidden states for every layer, so any objective and any downstream plugin
can sit on any encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from audiossl.encoders.embed import EmbeddedTokens, InputConfig, TokenEmbedding, TokenFeatures
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
    """Base class: ``forward(features, lengths, mask=None, keep_indices=None, extracted=None) -> EncoderOutput``.

    ``features`` (B, F, C) are frames x channels (e.g. fbank bins), or (B, T) waveforms for
    waveform encoders; ``lengths`` (B,) are valid frames (samples). ``mask`` (B, S) bool
    replaces those tokens by a learned mask embedding; ``keep_indices`` (B, K) keeps only
    those tokens (MAE-style, ``-1``-padded, see :func:`audiossl.encoders.embed.gather_kept`).
    At most one of them is given. Both index the S input tokens of :meth:`token_lengths`
    (prefix tokens excluded).

    The seam objectives use, in two steps (as fairseq2's frontend exposes ``extract_features``):

    1. :meth:`extract_features` -> :class:`~audiossl.encoders.embed.TokenFeatures`: the unmasked
       tokens before projection, the waveform front-end's raw output, token lengths and
       ``freq_patches`` (what quantizers, feature penalties and patch targets read);
    2. ``encoder(features, lengths, mask=..., extracted=...)``: the same pass from those tokens,
       without running the front-end again.

    Subclasses build ``self.embedding`` (a :class:`~audiossl.encoders.embed.TokenEmbedding`) and
    implement :meth:`contextualize` (their blocks over the embedded tokens). An encoder with
    another embedding overrides :meth:`extract_features`, :meth:`token_lengths`, ``forward`` and
    the ``input_config`` / ``token_dim`` / ``freq_patches`` properties. Their configs have
    ``input: InputConfig`` and ``dim: int`` fields, which the shared tests and
    :mod:`audiossl.testing.configs` rely on.
    """

    #: Width D of the hidden states.
    dim: int
    #: Number of blocks L (len(EncoderOutput.layers)).
    num_layers: int
    #: Leading non-input positions in the output (cls tokens); see EncoderOutput.
    num_prefix_tokens: int = 0
    #: The token maker (projection, positions, mask embedding).
    embedding: TokenEmbedding

    @property
    def input_config(self) -> InputConfig:
        """How this encoder turns its input into tokens (kind, bins, patch, stacking, front-end)."""
        return self.embedding.config

    @property
    def token_dim(self) -> int:
        """Width of the tokens before projection (``TokenFeatures.tokens``)."""
        return self.embedding.token_dim

    @property
    def freq_patches(self) -> int:
        """Tokens per time step: frequency patches for patch tokens, else 1."""
        return int(self.embedding.freq_patches)

    #: Recompute each block in backward instead of keeping its activations (:meth:`configure_blocks`).
    activation_checkpointing: bool = False

    def block_modules(self) -> list[nn.Module]:
        """The repeated blocks, in order: what FSDP shards one by one and :meth:`run_block` runs.

        The default is the ``blocks`` module list (``layers`` for encoders that name it so); an
        encoder that keeps its blocks elsewhere overrides this.
        """
        for name in ("blocks", "layers"):
            found = getattr(self, name, None)
            if isinstance(found, nn.ModuleList):
                return list(found)
        return []

    def configure_blocks(
        self, *, activation_checkpointing: bool = False, compile: bool = False, compile_backend: str = "inductor"
    ) -> None:
        """Training options per block: activation checkpointing, and ``torch.compile`` of each block.

        Compiling per block (regional compilation) compiles one graph that every block of the same
        kind reuses, rather than the whole objective with its data-dependent masking.
        """
        self.activation_checkpointing = activation_checkpointing
        if compile:
            for block in self.block_modules():
                block.compile(backend=compile_backend)

    def run_block(self, block: Callable[..., torch.Tensor], *args: object) -> torch.Tensor:
        """``block(*args)``; with activation checkpointing (and gradients on), only its inputs are kept.

        Every encoder calls its blocks through this: the one place where checkpointing applies.
        Dropout draws the same numbers in the recomputation (the random state is replayed).
        """
        if self.activation_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def token_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Input tokens (what ``mask`` / ``keep_indices`` index) for inputs of ``lengths`` frames (B,).

        The output has ``num_prefix_tokens`` more positions per item.
        """
        return self.embedding.token_lengths(lengths)

    def extract_features(self, features: torch.Tensor, lengths: torch.Tensor) -> TokenFeatures:
        """The unmasked input tokens before projection (+ raw front-end features), see the class doc."""
        return self.embedding.extract_features(features, lengths)

    def forward(
        self,
        features: torch.Tensor | None,
        lengths: torch.Tensor | None,
        mask: torch.Tensor | None = None,
        keep_indices: torch.Tensor | None = None,
        extracted: TokenFeatures | None = None,
    ) -> EncoderOutput:
        """Hidden states of every block; ``extracted`` (from :meth:`extract_features`) skips the front-end."""
        if mask is not None and keep_indices is not None:
            raise ValueError("give either mask or keep_indices, not both")
        if extracted is None:
            extracted = self.extract_features(features, lengths)
        return self.contextualize(self.embedding.embed(extracted, mask=mask, keep_indices=keep_indices))

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        """The encoder's blocks over positioned (masked, kept) tokens -> :class:`EncoderOutput`."""
        raise NotImplementedError

    def output(
        self,
        last: torch.Tensor,
        layers: list[torch.Tensor],
        lengths: torch.Tensor,
        padding_mask: torch.Tensor,
        embedded: EmbeddedTokens,
    ) -> EncoderOutput:
        """The :class:`EncoderOutput` of a :meth:`contextualize`: ``last`` zeroed at padding, prefix counted."""
        return EncoderOutput(
            last=last.masked_fill(padding_mask.unsqueeze(-1), 0.0),
            layers=layers,
            lengths=lengths,
            padding_mask=padding_mask,
            kept_indices=embedded.kept_indices,
            num_prefix_tokens=self.num_prefix_tokens,
        )


@dataclass(frozen=True)
class EncoderSpec:
    """A registered encoder family: its config class, factory and named presets."""

    name: str
    config_class: type
    factory: Callable[..., Encoder]
    presets: dict[str, Callable[[], object]]
    description: str = ""


#: Registry of encoder families by name ("ast", "mamba", "conformer", ...).
ENCODERS: Registry[EncoderSpec] = Registry("encoder")


def register_encoder(
    name: str, config_class: type, presets: Mapping[str, Callable[[], object]], description: str = ""
) -> Callable[[type], type]:
    """Class decorator: register an :class:`Encoder` subclass built as ``cls(config)``, with named presets.

    The same style as :func:`~audiossl.objectives.register_objective` and
    :func:`~audiossl.audio.frontends.register_frontend`; third-party packages use it from an extension
    (:mod:`audiossl.extensions`). ``presets`` maps a preset name to a function returning a
    config (``"tiny"`` is the default preset of :func:`create_encoder`).
    """

    def decorator(cls: type) -> type:
        ENCODERS.register(name)(EncoderSpec(name, config_class, cls, dict(presets), description))
        return cls

    return decorator


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
