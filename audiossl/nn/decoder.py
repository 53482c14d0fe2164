"""A generic Transformer decoder: causal self-attention + cross-attention over any encoder's output.

Pre-norm blocks (self-attention, cross-attention, feed-forward, each ``x + f(norm(x))``) over
already embedded inputs (B, U, D): a text embedding (:class:`TextDecoder`), a speech pre-net
(SpeechT5's mel pre-net), anything of width D. The decoder adds a sinusoidal code of the
absolute position times a learned scale (SpeechT5's scaled positional encoding), so no length
is baked in; ``max_length`` only bounds what callers may ask for (a clear error past it).

Two ways to run it, equal up to float rounding (a test checks it):

- teacher-forced: ``decoder(inputs, lengths, memory, memory_lengths)`` over the whole target;
- incremental: ``cache = decoder.init_cache(memory, memory_lengths)``, then
  ``decoder.step(inputs_t, cache)`` for one (or a few) new positions at a time. The cache keeps
  every layer's self-attention keys/values and the cross-attention keys/values of the memory
  (computed once); :meth:`DecoderCache.reorder` selects rows for beam search.

Padding: targets are right-padded (``lengths``), so causal attention never lets a valid position
see padding; the memory's padding keys are masked (``memory_lengths``). Padding outputs are zero.
A padded batch gives, at every valid position, what each item gives alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.nn.attention import FeedForward
from audiossl.nn.masking import lengths_to_padding_mask
from audiossl.nn.positional import sinusoidal_encoding


@dataclass(kw_only=True)
class DecoderConfig:
    """A Transformer decoder (defaults: SpeechT5 base, 6 blocks of 768)."""

    dim: int = 768
    """Hidden size D (the width of the embedded inputs)."""

    num_layers: int = 6
    """Decoder blocks."""

    num_heads: int = 12
    """Attention heads; must divide ``dim``."""

    ffn_dim: int = 3072
    """Hidden size of the feed-forward network."""

    memory_dim: int | None = None
    """Width of the encoder output the decoder attends to; None = ``dim``. Other widths are
    projected by a linear layer (so any audiossl encoder can feed the decoder)."""

    dropout: float = 0.1
    """Dropout after attention, in the feed-forward network and on the positioned inputs."""

    attention_dropout: float = 0.0
    """Dropout on the attention weights."""

    max_length: int = 1024
    """Longest target (positions) callers may decode or teacher-force; longer raises a clear error."""

    norm_eps: float = 1e-5
    """Epsilon of the layer norms."""

    def __post_init__(self) -> None:
        if self.dim % self.num_heads != 0:
            raise ConfigError(f"decoder dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.num_layers < 1 or self.max_length < 1:
            raise ConfigError("decoder num_layers and max_length must be >= 1")


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value projections (self or cross)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, D) -> (B, H, S, Dh)."""
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``x`` (B, S, D) -> 2 x (B, H, S, Dh)."""
        key, value = self.key_value(x).chunk(2, dim=-1)
        return self.split(key), self.split(value)

    def attend(
        self, x: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Queries from ``x`` (B, U, D) over ``key``/``value`` (B, H, S, Dh); ``mask`` True = attend."""
        batch, length, dim = x.shape
        out = F.scaled_dot_product_attention(
            self.split(self.query(x)), key, value, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, U, Dh)
        return self.out(out.transpose(1, 2).reshape(batch, length, dim))


class DecoderBlock(nn.Module):
    """Pre-norm: ``x + self_attn(norm(x))``, ``x + cross_attn(norm(x), memory)``, ``x + ffn(norm(x))``."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        dim = config.dim
        self.self_norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.self_attention = Attention(dim, config.num_heads, config.attention_dropout)
        self.cross_norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.cross_attention = Attention(dim, config.num_heads, config.attention_dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self.ffn = FeedForward(dim, config.ffn_dim, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor],
        self_mask: torch.Tensor | None,
        memory_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` (B, U, D) new positions; ``past`` the cached keys/values (B, H, t, Dh) before them.

        Returns the block's output (B, U, D) and the keys/values of all t + U positions.
        """
        normed = self.self_norm(x)
        key, value = self.self_attention.keys_values(normed)
        key, value = torch.cat([past[0], key], dim=2), torch.cat([past[1], value], dim=2)
        x = x + self.dropout(self.self_attention.attend(normed, key, value, self_mask))
        x = x + self.dropout(self.cross_attention.attend(self.cross_norm(x), *memory_kv, memory_mask))
        return x + self.ffn(self.ffn_norm(x)), (key, value)


@dataclass
class DecoderCache:
    """Incremental decoding state of :class:`TransformerDecoder` for a batch of N rows.

    ``self_keys`` / ``self_values``: per layer (N, H, t, Dh), the t positions decoded so far.
    ``memory_keys`` / ``memory_values``: per layer (N, H, S, Dh), of the (projected) memory.
    ``memory_mask``: (N, 1, 1, S) bool True = attend, or None when nothing is padded.
    ``length``: t, positions decoded so far.
    """

    self_keys: list[torch.Tensor]
    self_values: list[torch.Tensor]
    memory_keys: list[torch.Tensor]
    memory_values: list[torch.Tensor]
    memory_mask: torch.Tensor | None
    length: int = 0

    def reorder(self, indices: torch.Tensor) -> DecoderCache:
        """The cache of rows ``indices`` (M,) (beam search: the surviving hypotheses' parents)."""

        def pick(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return [t.index_select(0, indices) for t in tensors]

        return DecoderCache(
            pick(self.self_keys),
            pick(self.self_values),
            pick(self.memory_keys),
            pick(self.memory_values),
            None if self.memory_mask is None else self.memory_mask.index_select(0, indices),
            self.length,
        )


def memory_attention_mask(memory_lengths: torch.Tensor, length: int) -> torch.Tensor | None:
    """(B,) memory lengths -> (B, 1, 1, S) bool True = attend, or None when nothing is padded."""
    if (memory_lengths < 1).any():
        item = int((memory_lengths < 1).nonzero()[0])
        raise DataError(f"item {item} of the batch has an empty encoder output: the decoder has nothing to attend to")
    padding = lengths_to_padding_mask(memory_lengths, length)
    return None if not bool(padding.any()) else ~padding[:, None, None, :]


class TransformerDecoder(nn.Module):
    """Embedded targets (B, U, D) + encoder memory (B, S, memory_dim) -> hidden states (B, U, D)."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.dim = config.dim
        memory_dim = config.memory_dim or config.dim
        self.memory_projection = nn.Identity() if memory_dim == config.dim else nn.Linear(memory_dim, config.dim)
        self.position_scale = nn.Parameter(torch.ones(()))
        self.input_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)

    def check_length(self, length: int) -> None:
        """Raise :class:`DataError` when ``length`` positions exceed ``max_length``."""
        if length > self.config.max_length:
            raise DataError(
                f"a target of {length} positions is longer than the decoder's maximum {self.config.max_length} "
                "(decoder max_length)"
            )

    def _position(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Add the scaled sinusoidal code of positions ``start .. start + U - 1`` to ``x`` (B, U, D)."""
        self.check_length(start + x.shape[1])
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        code = sinusoidal_encoding(positions, self.dim).to(x.dtype)  # (U, D)
        return self.input_dropout(x + self.position_scale.to(x.dtype) * code)

    def init_cache(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> DecoderCache:
        """An empty cache over ``memory`` (B, S, memory_dim) with ``memory_lengths`` (B,)."""
        memory = self.memory_projection(memory)  # (B, S, D)
        memory_keys, memory_values = [], []
        for block in self.blocks:
            key, value = block.cross_attention.keys_values(memory)
            memory_keys.append(key)
            memory_values.append(value)
        heads = self.blocks[0].self_attention.num_heads
        empty = memory.new_zeros(memory.shape[0], heads, 0, self.dim // heads)  # (B, H, 0, Dh)
        n = len(self.blocks)
        return DecoderCache(
            [empty] * n,
            [empty] * n,
            memory_keys,
            memory_values,
            memory_attention_mask(memory_lengths, memory.shape[1]),
            0,
        )

    def step(self, inputs: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Decode ``inputs`` (N, k, D) at positions ``cache.length ..`` -> (hidden (N, k, D), new cache).

        The new positions attend causally to each other and to every cached position.
        """
        start, new = cache.length, inputs.shape[1]
        x = self._position(inputs, start)
        causal = None
        if new > 1:
            rows = torch.arange(new, device=x.device).unsqueeze(1) + start
            causal = (torch.arange(start + new, device=x.device).unsqueeze(0) <= rows)[None, None]  # (1,1,k,t+k)
        keys, values = [], []
        for index, block in enumerate(self.blocks):
            memory_kv = (cache.memory_keys[index], cache.memory_values[index])
            past = (cache.self_keys[index], cache.self_values[index])
            x, (key, value) = block(x, past, causal, memory_kv, cache.memory_mask)
            keys.append(key)
            values.append(value)
        updated = DecoderCache(keys, values, cache.memory_keys, cache.memory_values, cache.memory_mask, start + new)
        return self.norm(x), updated

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced pass: ``inputs`` (B, U, D), ``lengths`` (B,), ``memory`` (B, S, Dm), ``memory_lengths`` (B,).

        Returns (B, U, D) hidden states after the final norm, zero past ``lengths``.
        """
        hidden, _ = self.step(inputs, self.init_cache(memory, memory_lengths))
        padding = lengths_to_padding_mask(lengths.to(hidden.device), hidden.shape[1])
        return hidden.masked_fill(padding.unsqueeze(-1), 0.0)


class TiedTextHead:
    """Token decoding over a :class:`TransformerDecoder`, mixed into a module that owns three attributes:
    ``embedding`` (nn.Embedding (V, D)), ``decoder`` (:class:`TransformerDecoder`) and ``output_bias`` ((V,)).

    The embedding (scaled by sqrt(D)) is tied to the output projection. Search needs only
    :meth:`init_cache` and :meth:`step` (:func:`audiossl.nn.beam_search.beam_search`).
    """

    embedding: nn.Embedding
    decoder: TransformerDecoder
    output_bias: torch.Tensor

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, U) long -> (B, U, D) scaled embeddings."""
        return self.embedding(tokens) * math.sqrt(self.embedding.embedding_dim)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V) through the tied embedding."""
        return F.linear(hidden, self.embedding.weight, self.output_bias)

    def text_logits(
        self, tokens: torch.Tensor, lengths: torch.Tensor, memory: torch.Tensor, memory_lengths: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (B, U, V) of the next token after each of ``tokens`` (B, U)."""
        return self.logits(self.decoder(self.embed(tokens), lengths, memory, memory_lengths))

    def init_cache(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> DecoderCache:
        """See :meth:`TransformerDecoder.init_cache`."""
        return self.decoder.init_cache(memory, memory_lengths)

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Log-probabilities (N, V) of the next token after ``tokens`` (N,) (the last of each row)."""
        hidden, cache = self.decoder.step(self.embed(tokens.unsqueeze(1)), cache)
        return F.log_softmax(self.logits(hidden[:, -1]).float(), dim=-1), cache


def tied_embedding(vocab_size: int, dim: int, padding_index: int | None = None) -> nn.Embedding:
    """A token embedding initialised N(0, 1/D) (its scaled rows have unit variance), padding row zero."""
    if vocab_size < 2:
        raise ConfigError(f"a text decoder needs a vocabulary of at least 2 tokens, got {vocab_size}")
    embedding = nn.Embedding(vocab_size, dim, padding_idx=padding_index)
    nn.init.normal_(embedding.weight, std=dim**-0.5)
    if padding_index is not None:
        with torch.no_grad():
            embedding.weight[padding_index].zero_()
    return embedding


class TextDecoder(TiedTextHead, nn.Module):
    """A standalone token decoder: tied embedding + :class:`TransformerDecoder` (see :class:`TiedTextHead`).

    ``forward(tokens, lengths, memory, memory_lengths) -> logits (B, U, V)``; for search,
    ``init_cache`` + ``step(tokens (N,), cache) -> (log-probabilities (N, V), cache)``.
    """

    def __init__(self, vocab_size: int, config: DecoderConfig, padding_index: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = tied_embedding(vocab_size, config.dim, padding_index)
        self.decoder = TransformerDecoder(config)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor, memory: torch.Tensor, memory_lengths: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (B, U, V) of the next token after each of ``tokens`` (B, U)."""
        return self.text_logits(tokens, lengths, memory, memory_lengths)
