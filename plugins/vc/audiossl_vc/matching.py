"""k-nearest-neighbour matching of SSL frames against a target speaker's pool.

kNN-VC (Baas, van Niekerk and Kamper, "Voice Conversion With Just Nearest Neighbors",
Interspeech 2023) and NeuCoSVC's matching step replace every source frame by the average of
the ``k`` target frames most similar to it (cosine similarity). Self-supervised features keep
phonetic content close across speakers, so the nearest target frames say the same thing in the
target's voice; averaging a few smooths the result.

The pool can hold minutes of speech (hundreds of thousands of frames), so the similarity matrix
is never formed whole: source frames are taken ``source_chunk`` at a time and the pool
``pool_chunk`` at a time, keeping a running top-k. Peak memory is
``source_chunk x (pool_chunk + k)`` similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_match(
    source: torch.Tensor,
    pool: torch.Tensor,
    k: int = 4,
    *,
    source_chunk: int = 1024,
    pool_chunk: int = 8192,
) -> torch.Tensor:
    """Each source frame (N, D) replaced by the mean of its ``k`` nearest pool frames (M, D) -> (N, D).

    Nearness is cosine similarity; the average is over the pool frames as they are (not normalised).
    ``k`` larger than the pool uses the whole pool.
    """
    if source.dim() != 2 or pool.dim() != 2 or source.shape[1] != pool.shape[1]:
        raise ValueError(f"expected source (N, D) and pool (M, D), got {tuple(source.shape)} and {tuple(pool.shape)}")
    if pool.shape[0] == 0:
        raise ValueError("the target pool is empty")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, pool.shape[0])
    indices = knn_indices(source, pool, k, source_chunk=source_chunk, pool_chunk=pool_chunk)  # (N, k)
    return pool[indices].mean(dim=1)  # (N, D)


def knn_indices(
    source: torch.Tensor, pool: torch.Tensor, k: int, *, source_chunk: int = 1024, pool_chunk: int = 8192
) -> torch.Tensor:
    """Indices (N, k) of the ``k`` pool frames most cosine-similar to each source frame, best first."""
    source_unit = F.normalize(source.float(), dim=-1)  # (N, D)
    pool_unit = F.normalize(pool.float(), dim=-1)  # (M, D)
    out = torch.empty(source.shape[0], k, dtype=torch.long, device=source.device)
    for start in range(0, source.shape[0], source_chunk):
        queries = source_unit[start : start + source_chunk]  # (n, D)
        best_values = torch.full((queries.shape[0], 0), -float("inf"), device=source.device)  # (n, <=k)
        best_indices = torch.zeros((queries.shape[0], 0), dtype=torch.long, device=source.device)
        for pool_start in range(0, pool.shape[0], pool_chunk):
            block = pool_unit[pool_start : pool_start + pool_chunk]  # (m, D)
            scores = queries @ block.T  # (n, m)
            candidates = torch.cat([best_values, scores], dim=1)  # (n, <=k + m)
            candidate_indices = torch.cat(
                [best_indices, pool_start + torch.arange(block.shape[0], device=source.device).expand_as(scores)],
                dim=1,
            )
            keep = min(k, candidates.shape[1])
            best_values, order = candidates.topk(keep, dim=1)  # (n, keep)
            best_indices = candidate_indices.gather(1, order)
        out[start : start + queries.shape[0]] = best_indices
    return out


def knn_match_batch(
    source: torch.Tensor, lengths: torch.Tensor, pool: torch.Tensor, k: int = 4, **chunks: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`knn_match` on a padded batch (B, N, D) with lengths (B,) -> (B, N, D) zero at padding, lengths."""
    valid = torch.arange(source.shape[1], device=source.device) < lengths.to(source.device).unsqueeze(1)  # (B, N)
    out = torch.zeros(source.shape[0], source.shape[1], pool.shape[1], dtype=pool.dtype, device=source.device)
    if valid.any():
        out[valid] = knn_match(source[valid], pool, k, **chunks).to(pool.dtype)
    return out, lengths
