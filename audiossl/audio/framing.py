"""Frame-wise computation over a whole padded batch, in cache-sized chunks.

The spectral front-ends (Kaldi fbank, librosa log-mel) cut every item into overlapping
frames and transform each frame independently. This module lays a batch out so that the
frames of all items are rows of one strided view (no per-utterance loop), and runs a
per-frame computation over the valid rows only:

* on CPU in chunks of about :data:`CHUNK_FRAMES` rows, so that the intermediates (frames,
  spectra, powers) stay in cache: a long item is split into equal chunks read as strided
  views and written as row slices; short items are packed together (gathered, scattered);
* elsewhere (GPU) in one pass.

It also provides the banded matmul used for mel filters: each group of :data:`MEL_BLOCK`
consecutive filters only covers a contiguous range of FFT bins, so the product is a few
small dense products instead of one mostly-zero one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from audiossl.nn.masking import lengths_to_mask

#: Frames per chunk on CPU: a 512 x 512 float buffer is 1 MiB, so a chunk's intermediates stay
#: in cache (measured on a 2-core EPYC: 512 is as fast as 1024 alone and faster under load).
CHUNK_FRAMES = 512
#: Filters per dense block of a banded matmul.
MEL_BLOCK = 16


def chunked(device: torch.device) -> bool:
    """Cache-sized chunks and banded blocks on CPU; one pass with dense matmuls elsewhere."""
    return device.type == "cpu"


def flat_frames(buffer: torch.Tensor, frame_length: int, frame_shift: int, offset: int = 0) -> tuple[torch.Tensor, int]:
    """Frames of every row of ``buffer`` (B, W) as one view (R, frame_length), and the rows per item.

    Frame ``f`` of item ``b`` starts at ``buffer[b, offset + f * frame_shift]`` and is row
    ``b * rows_per_item + f``; ``W`` is padded up to a multiple of the shift when needed (a copy).
    """
    batch, width = buffer.shape
    padded = math.ceil(max(width, offset + frame_length) / frame_shift) * frame_shift
    if padded != width:
        buffer = torch.nn.functional.pad(buffer, (0, padded - width))
    flat = buffer.contiguous().reshape(-1)[offset:]  # (B * padded - offset,)
    return flat.unfold(0, frame_length, frame_shift), padded // frame_shift


def chunk_plan(counts: list[int], chunk: int) -> list[list[tuple[int, int, int]]]:
    """Group valid frames into chunks of about ``chunk`` rows: lists of (item, start, stop).

    An item with at least half a chunk of frames is split into equal single-item chunks;
    shorter items are packed together.
    """
    plan: list[list[tuple[int, int, int]]] = []
    packed: list[tuple[int, int, int]] = []
    packed_rows = 0
    for item, count in enumerate(counts):
        if count == 0:
            continue
        if count >= chunk // 2:
            pieces = -(-count // chunk)
            bounds = [count * k // pieces for k in range(pieces + 1)]
            plan.extend([(item, bounds[k], bounds[k + 1])] for k in range(pieces))
            continue
        if packed_rows + count > chunk:
            plan.append(packed)
            packed, packed_rows = [], 0
        packed.append((item, 0, count))
        packed_rows += count
    if packed:
        plan.append(packed)
    return plan


def map_frames(
    frames: torch.Tensor,
    rows_per_item: int,
    frame_lengths: torch.Tensor,
    channels: int,
    compute: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None],
    work_width: int,
) -> torch.Tensor:
    """Run ``compute(rows (n, N), out (n, C), work (n, work_width))`` over all valid frames.

    ``frames`` (R, N) is the view from :func:`flat_frames`. ``compute`` writes each chunk's
    features into ``out`` (possibly a view of the result); ``work`` is a scratch buffer whose
    content persists between chunks (callers keep zero columns in it). Returns features
    (B, F, C) with F = max frame count and zeros past each item's ``frame_lengths``.
    """
    device = frames.device
    counts = frame_lengths.tolist()
    batch, max_frames = len(counts), max(counts, default=0)
    features = frames.new_empty(batch, max_frames, channels)  # (B, F, C)
    flat_features = features.view(batch * max_frames, channels)  # (B * F, C)
    padding_rows = (~lengths_to_mask(frame_lengths, max_frames)).flatten().nonzero().flatten()
    flat_features.index_fill_(0, padding_rows, 0.0)
    if max_frames == 0:
        return features
    plan = chunk_plan(counts, CHUNK_FRAMES if chunked(device) else sum(counts))
    sizes = [sum(stop - start for _, start, stop in part) for part in plan]
    work = frames.new_zeros(max(sizes), work_width)  # (chunk, work_width)
    for part, size in zip(plan, sizes, strict=True):
        if len(part) == 1:
            item, start, stop = part[0]
            rows = frames[item * rows_per_item + start : item * rows_per_item + stop]  # (n, N) strided view
            compute(rows, flat_features[item * max_frames + start : item * max_frames + stop], work[:size])
            continue
        source = torch.cat([torch.arange(i * rows_per_item + a, i * rows_per_item + b) for i, a, b in part])
        target = torch.cat([torch.arange(i * max_frames + a, i * max_frames + b) for i, a, b in part])
        out = frames.new_empty(size, channels)  # (n, C)
        compute(frames.index_select(0, source.to(device)), out, work[:size])
        flat_features.index_copy_(0, target.to(device), out)
    return features


def banded_blocks(matrix: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    """Split ``matrix`` (K, M) into column groups of :data:`MEL_BLOCK` with their nonzero row range.

    Returns ``[(lo, hi, block (hi - lo, g))]``; ``x @ matrix`` equals the concatenation of
    ``x[:, lo:hi] @ block`` over the groups.
    """
    blocks = []
    for start in range(0, matrix.shape[1], MEL_BLOCK):
        group = matrix[:, start : start + MEL_BLOCK]  # (K, g)
        support = group.abs().sum(1).nonzero().flatten()
        lo, hi = (int(support[0]), int(support[-1]) + 1) if support.numel() else (0, 0)
        blocks.append((lo, hi, group[lo:hi].contiguous()))
    return blocks


def project(
    x: torch.Tensor, dense: torch.Tensor, blocks: list[tuple[int, int, torch.Tensor]], out: torch.Tensor
) -> None:
    """``out = x @ dense``: banded blocks in cache-sized CPU chunks, one dense matmul elsewhere."""
    if not chunked(x.device):
        out.copy_(x @ dense)
    elif out.is_contiguous():
        torch.cat([x[:, lo:hi] @ block for lo, hi, block in blocks], dim=1, out=out)
    else:
        out.copy_(torch.cat([x[:, lo:hi] @ block for lo, hi, block in blocks], dim=1))


def power_spectrum(spectrum: torch.Tensor) -> torch.Tensor:
    """``re^2 + im^2`` of a complex (n, K) spectrum, without the square root of ``abs``."""
    squares = torch.view_as_real(spectrum).flatten(1).square()  # (n, 2K): re^2, im^2 interleaved
    return squares[:, 0::2] + squares[:, 1::2]  # (n, K)
