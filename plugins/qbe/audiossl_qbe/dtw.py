"""Subsequence DTW with cosine distance: how well a query matches anywhere inside a document.

The query (N frames) must be matched whole; the document (M frames) may be entered and left
at any frame (Müller, "Fundamentals of Music Processing", 2015, sec. 7.2: subsequence DTW).
Steps (1, 1), (1, 0) and (0, 1), each adding the local cost ``1 - cos(q_i, d_j)``:

    D(0, j) = C(0, j)
    D(i, j) = C(i, j) + min(D(i-1, j-1), D(i-1, j), D(i, j-1))

and the match cost is ``min_j D(N-1, j) / N`` (divided by the query length so that queries of
different lengths give comparable scores). The row recursion has a horizontal dependency;
with ``a_j = min(D(i-1, j-1), D(i-1, j))`` and ``S`` the running sum of row ``i``'s costs it
unrolls to ``D(i, j) = S_j + min_{k<=j} (a_k - S_{k-1})``, a cumulative minimum, so a whole
row over a whole batch of documents is a handful of tensor operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_costs(query: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between every query frame and every document frame: (N, D), (B, M, D) -> (B, N, M)."""
    q = F.normalize(query.double(), dim=-1)  # (N, D)
    d = F.normalize(documents.double(), dim=-1)  # (B, M, D)
    return 1.0 - torch.einsum("nd,bmd->bnm", q, d)


def subsequence_dtw(query: torch.Tensor, documents: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Match cost of ``query`` (N, D) in each of ``documents`` (B, M, D) with valid ``lengths`` (B,) -> (B,).

    Lower is better; 0 when the query occurs verbatim (same feature directions). Frames of a
    document past its length are never part of a path's end (they may only follow the end, so
    they cannot lower the cost).
    """
    if query.shape[0] == 0:
        raise ValueError("empty query (no frames)")
    costs = cosine_costs(query, documents)  # (B, N, M)
    batch, n, m = costs.shape
    inf = torch.full((batch, 1), float("inf"), dtype=costs.dtype)
    row = costs[:, 0]  # (B, M): free start anywhere in the document
    for i in range(1, n):
        previous = torch.cat([inf, row[:, :-1]], dim=1)  # D(i-1, j-1)
        entry = torch.minimum(previous, row)  # a_j (B, M)
        running = costs[:, i].cumsum(dim=1)  # S_j
        before = torch.cat([torch.zeros_like(inf), running[:, :-1]], dim=1)  # S_{j-1}
        row = running + torch.cummin(entry - before, dim=1).values
    valid = torch.arange(m)[None, :] < lengths[:, None]  # (B, M)
    ends = row.masked_fill(~valid, float("inf"))
    return (ends.min(dim=1).values / n).float()
