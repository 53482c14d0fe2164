"""Vectorised mask samplers for padded batches of tokens.

Three ways of choosing which tokens an objective hides from the encoder, all returning a
(B, S) bool mask that is True at masked tokens and never True at padding:

- ``random``: a fixed count (or ratio) of tokens per item chosen uniformly (SSAST frame
  masking, MAE).
- ``span``: wav2vec 2.0 span masking (Baevski et al. 2020): each valid token starts a span
  of ``span_length`` tokens with probability ``start_prob``; spans may overlap.
- ``chunk``: SSAST cluster masking of patches (Gong et al. 2022): square chunks of
  ``chunk_min``..``chunk_max`` patches (time x frequency) at random places are added one by
  one until the item has its count of masked patches; the last chunk is cut to fit.

Every sampler draws all its random numbers as whole-batch tensors from an optional
``torch.Generator``, so a seeded generator gives the same mask on every run, and none loops
over tokens or items in Python.

Rule for how many tokens an item gets (``random`` and ``chunk``), see :func:`masked_counts`:
``count`` alone masks exactly ``count`` tokens and an item with fewer tokens is an error;
``ratio`` alone masks ``max(1, floor(ratio * length))``; both together mask
``min(count, max(1, floor(ratio * length)))``, so the ratio caps the count for short items.

No mask may hide every token of an item (the encoder would see no context): a ratio of 1 and
a span ``start_prob`` of 1 are refused when the config is built, and a count (or a number of
spans) that covers a whole item is refused when that item's mask is drawn, naming the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


@dataclass(kw_only=True)
class MaskConfig:
    """Which tokens an objective masks."""

    kind: Literal["random", "span", "chunk"] = "random"
    """``random`` tokens, wav2vec 2.0 ``span`` s, or SSAST ``chunk`` s (square clusters of patches)."""

    count: int | None = None
    """Tokens masked per item (``random``, ``chunk``), e.g. 400 of SSAST's 512 patches."""

    ratio: float | None = None
    """Fraction of each item's tokens to mask (``random``, ``chunk``); with ``count`` it caps the
    count for short items: ``min(count, max(1, floor(ratio * length)))``."""

    start_prob: float = 0.065
    """``span``: probability that a valid token starts a span (wav2vec 2.0: 0.065)."""

    span_length: int = 10
    """``span``: tokens per span M (wav2vec 2.0: 10)."""

    min_spans: int = 0
    """``span``: at least this many spans per item; an item too short to hold them is an error."""

    chunk_min: int = 3
    """``chunk``: smallest chunk side, in tokens (SSAST: 3)."""

    chunk_max: int = 5
    """``chunk``: largest chunk side, in tokens (SSAST: 5); each chunk's side is uniform in range."""

    def __post_init__(self) -> None:
        # Messages start with the key (``mask.ratio: ...``) so that a config loader can name the
        # full key path and its line (``objective.config.mask.ratio`` in a pretraining config).
        if self.kind in ("random", "chunk"):
            if self.count is None and self.ratio is None:
                raise ConfigError(
                    f"mask.kind: {self.kind!r} needs count or ratio (or both): set mask.count or mask.ratio"
                )
        if self.count is not None and self.count < 1:
            raise ConfigError(f"mask.count: must be >= 1, got {self.count}")
        if self.ratio is not None and self.ratio >= 1.0:
            raise ConfigError(
                f"mask.ratio: {self.ratio} masks every token, leaving the encoder no visible context; "
                "it must be below 1 (SSAST: 0.8)"
            )
        if self.ratio is not None and not self.ratio > 0.0:
            raise ConfigError(f"mask.ratio: must be in (0, 1), got {self.ratio}")
        if not 0.0 <= self.start_prob <= 1.0:
            raise ConfigError(f"mask.start_prob: must be in [0, 1), got {self.start_prob}")
        if self.span_length < 1:
            raise ConfigError(f"mask.span_length: must be >= 1, got {self.span_length}")
        if self.min_spans < 0:
            raise ConfigError(f"mask.min_spans: must be >= 0, got {self.min_spans}")
        if not 1 <= self.chunk_min <= self.chunk_max:
            raise ConfigError(
                f"mask.chunk_min: chunk sizes need 1 <= mask.chunk_min <= mask.chunk_max, "
                f"got {self.chunk_min}..{self.chunk_max}"
            )
        if self.kind == "span":
            if self.start_prob >= 1.0:
                raise ConfigError(
                    f"mask.start_prob: {self.start_prob} starts a span at every token, so the span mask hides "
                    "every token and leaves the encoder no visible context; it must be below 1 (wav2vec 2.0: 0.065)"
                )
            if self.start_prob == 0.0 and self.min_spans == 0:
                raise ConfigError(
                    "mask.start_prob: 0 with mask.min_spans 0 masks no token, so the objective has nothing to "
                    "predict; raise mask.start_prob (wav2vec 2.0: 0.065) or mask.min_spans"
                )


def _first_offender(bad: torch.Tensor) -> int:
    return int(bad.nonzero()[0])


def masked_counts(lengths: torch.Tensor, count: int | None = None, ratio: float | None = None) -> torch.Tensor:
    """Tokens to mask in each item (B,) long, by the module's rule (see the module docstring).

    Raises :class:`ConfigError` naming the first item (and its length) that has fewer tokens
    than asked.
    """
    lengths = lengths.long()
    if count is None and ratio is None:
        raise ConfigError("give a mask count or ratio")
    if ratio is not None:
        by_ratio = torch.clamp(torch.floor(lengths.double() * ratio).long(), min=1)  # (B,)
        counts = by_ratio if count is None else torch.clamp(by_ratio, max=count)
    else:
        counts = torch.full_like(lengths, count)
    hidden = counts >= lengths  # more than the item has, or all of it: no visible context left
    if hidden.any():
        item = _first_offender(hidden)
        wanted, have = int(counts[item]), int(lengths[item])
        settings = ", ".join(
            f"mask.{name}={value}" for name, value in (("count", count), ("ratio", ratio)) if value is not None
        )
        affected = f"{int(hidden.sum())} item(s) affected"
        if wanted > have:
            raise ConfigError(
                f"cannot mask {wanted} tokens of batch item {item}: it has only {have} tokens ({settings}; "
                f"{affected}); lower mask.count or set a mask ratio to cap it"
            )
        advice = (
            "lower mask.count, or set mask.ratio below 1 to cap it for short items"
            if count is not None and wanted == count
            else "skip items this short (they have too few tokens to hide some and show the rest)"
        )
        raise ConfigError(
            f"{settings} would mask all {have} tokens of batch item {item} ({affected}), leaving the encoder "
            f"no visible context; {advice}"
        )
    return counts


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, device=device, generator=generator)


def _lowest(keys: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(B, S) bool: True at the ``counts[b]`` positions with the smallest keys of each row."""
    ranks = keys.argsort(dim=1).argsort(dim=1)  # (B, S) rank of each position in its row
    return ranks < counts.unsqueeze(1)


def random_mask(
    lengths: torch.Tensor, counts: torch.Tensor, max_length: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mask ``counts[b]`` tokens of item b chosen uniformly among its ``lengths[b]`` valid ones -> (B, S)."""
    valid = lengths_to_mask(lengths, max_length)  # (B, S)
    keys = _rand(tuple(valid.shape), lengths.device, generator).masked_fill(~valid, 2.0)  # padding sorts last
    return _lowest(keys, counts) & valid


def span_mask(
    lengths: torch.Tensor,
    max_length: int,
    start_prob: float,
    span_length: int,
    min_spans: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """wav2vec 2.0 span mask -> (B, S) bool.

    Item b gets ``k = floor(start_prob * length + u)`` spans (``u`` uniform in [0, 1), so the
    expected count is exact), at least ``min_spans``, at most the number of places a whole
    span fits (``length - span_length + 1``). Their distinct starts are drawn uniformly among
    those places and the spans may overlap, so fewer than ``k * span_length`` tokens may end up
    masked. An item shorter than one span gets no span (an error if ``min_spans > 0``).
    """
    lengths = lengths.long()
    places = torch.clamp(lengths - span_length + 1, min=0)  # (B,) possible span starts
    too_short = places < min_spans
    if too_short.any():
        item = _first_offender(too_short)
        raise ConfigError(
            f"cannot mask {min_spans} span(s) of {span_length} tokens in batch item {item}: it has only "
            f"{int(lengths[item])} tokens; lower mask.min_spans or mask.span_length"
        )
    # The fewest spans an item gets; when they must start at every possible place, every token is masked.
    fewest = torch.clamp(torch.floor(lengths.double() * start_prob).long(), min=min_spans)  # (B,)
    covered = (places > 0) & (fewest >= places)
    if covered.any():
        item = _first_offender(covered)
        raise ConfigError(
            f"the span mask would hide all {int(lengths[item])} tokens of batch item {item}: its "
            f"{int(places[item])} possible span start(s) must all be used (mask.min_spans={min_spans}, "
            f"mask.span_length={span_length}, mask.start_prob={start_prob}), leaving the encoder no visible "
            "context; lower mask.min_spans or mask.span_length, or skip short utterances"
        )
    jitter = _rand((lengths.shape[0],), lengths.device, generator)  # (B,)
    spans = torch.floor(lengths.double() * start_prob + jitter.double()).long()
    spans = torch.minimum(torch.clamp(spans, min=min_spans), places)  # (B,)
    starts = random_mask(places, spans, max_length, generator)  # (B, S) chosen span starts
    # A token is masked when a start lies within span_length - 1 tokens before it (or on it).
    padded = F.pad(starts.float().unsqueeze(1), (span_length - 1, 0))  # (B, 1, S + M - 1)
    return F.max_pool1d(padded, span_length, stride=1).squeeze(1) > 0  # (B, S)


def chunk_mask(
    lengths: torch.Tensor,
    counts: torch.Tensor,
    max_length: int,
    grid_width: int = 1,
    chunk_min: int = 3,
    chunk_max: int = 5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SSAST cluster masking -> (B, S) bool with exactly ``counts[b]`` masked tokens per item.

    Tokens form a time-major grid ``s = t * grid_width + f`` (``grid_width`` = frequency
    patches; 1 for frame tokens, where chunks become time spans). SSAST adds chunks at random
    places until enough patches are masked. Here every valid token is a potential chunk corner
    with a random arrival time and a random side in ``chunk_min..chunk_max``; a token's arrival
    time is the earliest arrival of the chunks covering it, and the ``counts[b]`` earliest
    tokens are masked. That is the sequential procedure, computed for all chunks at once: the
    first chunks arrive whole, the last one partly (its tokens in random order). Chunks are
    clipped at the grid's edges instead of wrapping to the next row.
    """
    batch = lengths.shape[0]
    size = -(-max_length // grid_width) * grid_width
    arrival = _rand((batch, size), lengths.device, generator)  # (B, R * W) corner arrival times
    sides = torch.randint(chunk_min, chunk_max + 1, (batch, size), device=lengths.device, generator=generator)
    tie_keys = _rand((batch, size), lengths.device, generator)  # (B, R * W) order inside a chunk
    mask = chunk_mask_from(lengths, counts, grid_width, arrival, sides, tie_keys)
    return mask[:, :max_length]


def chunk_mask_from(
    lengths: torch.Tensor,
    counts: torch.Tensor,
    grid_width: int,
    arrival: torch.Tensor,
    sides: torch.Tensor,
    tie_keys: torch.Tensor,
) -> torch.Tensor:
    """:func:`chunk_mask` for given random draws, all (B, R * W): corner ``arrival`` times,
    chunk ``sides`` and ``tie_keys`` ordering tokens inside a chunk -> (B, R * W) bool."""
    batch, size = arrival.shape
    rows = size // grid_width
    valid = lengths_to_mask(lengths, size)  # (B, R * W)
    arrival = arrival.masked_fill(~valid, float("inf"))  # padding is never a corner
    earliest = torch.full((batch, 1, rows, grid_width), float("inf"), device=arrival.device)
    for side in range(int(sides.min()), int(sides.max()) + 1):  # a few sizes, each over the whole batch
        corners = arrival.masked_fill(sides != side, float("inf")).view(batch, 1, rows, grid_width)
        # Chunk with corner (t, f) covers (t..t+side-1, f..f+side-1): a min-pool looking back.
        padded = F.pad(-corners, (side - 1, 0, side - 1, 0), value=float("-inf"))
        earliest = torch.minimum(earliest, -F.max_pool2d(padded, side, stride=1))
    earliest = earliest.view(batch, size).masked_fill(~valid, float("inf"))  # (B, R * W)
    # Order by arrival, ties (tokens of one chunk) by the tie keys: sort by key, then stably by arrival.
    by_key = tie_keys.argsort(dim=1)
    order = by_key.gather(1, earliest.gather(1, by_key).argsort(dim=1, stable=True))
    ranks = order.argsort(dim=1)
    return (ranks < counts.unsqueeze(1)) & valid


def sample_mask(
    config: MaskConfig,
    lengths: torch.Tensor,
    max_length: int,
    grid_width: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw the mask ``config`` describes for tokens of ``lengths`` (B,) padded to ``max_length`` -> (B, S)."""
    if config.kind == "span":
        return span_mask(lengths, max_length, config.start_prob, config.span_length, config.min_spans, generator)
    counts = masked_counts(lengths, config.count, config.ratio)
    if config.kind == "chunk":
        return chunk_mask(lengths, counts, max_length, grid_width, config.chunk_min, config.chunk_max, generator)
    return random_mask(lengths, counts, max_length, generator)
