"""kNN matching against a slow per-frame loop, chunking, padded batches."""

from __future__ import annotations

import pytest
import torch

from audiossl_vc.matching import knn_indices, knn_match, knn_match_batch


def slow_knn(source: torch.Tensor, pool: torch.Tensor, k: int) -> torch.Tensor:
    """Reference: for every source frame, sort the whole pool by cosine similarity in Python."""
    out = []
    for frame in source:
        scores = [
            float(frame @ candidate / (frame.norm() * candidate.norm())) for candidate in pool
        ]  # one cosine per pool frame
        order = sorted(range(len(pool)), key=lambda i: -scores[i])[:k]
        out.append(pool[order].mean(dim=0))
    return torch.stack(out)


@pytest.mark.parametrize(("k", "source_chunk", "pool_chunk"), [(1, 1024, 8192), (4, 3, 7), (5, 16, 2), (50, 4, 5)])
def test_matches_slow_loop_for_any_chunking(k, source_chunk, pool_chunk):
    generator = torch.Generator().manual_seed(k)
    source = torch.randn(19, 6, generator=generator)  # (N, D)
    pool = torch.randn(23, 6, generator=generator) * torch.rand(23, 1, generator=generator) * 5  # varied norms
    got = knn_match(source, pool, k, source_chunk=source_chunk, pool_chunk=pool_chunk)
    torch.testing.assert_close(got, slow_knn(source, pool, min(k, 23)), rtol=1e-5, atol=1e-5)


def test_cosine_ignores_scale_and_average_keeps_it():
    pool = torch.tensor([[1.0, 0.0], [0.0, 10.0], [-1.0, 0.0]])
    source = torch.tensor([[100.0, 1.0], [0.1, 5.0]])  # nearest by angle: pool 0, then pool 1
    torch.testing.assert_close(knn_match(source, pool, 1), torch.tensor([[1.0, 0.0], [0.0, 10.0]]))
    torch.testing.assert_close(knn_match(source, pool, 2), torch.tensor([[0.5, 5.0], [0.5, 5.0]]))
    assert knn_indices(source, pool, 3).tolist() == [[0, 1, 2], [1, 0, 2]]


def test_frames_of_the_pool_match_themselves():
    pool = torch.randn(40, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(knn_match(pool[5:15], pool, 1, pool_chunk=6), pool[5:15])


def test_padded_batch_equals_items_alone():
    generator = torch.Generator().manual_seed(1)
    pool = torch.randn(30, 4, generator=generator)
    items = [torch.randn(n, 4, generator=generator) for n in (7, 3)]
    batch = torch.full((2, 7, 4), 1e3)  # padding that would win every match if it leaked
    for row, item in enumerate(items):
        batch[row, : item.shape[0]] = item
    out, lengths = knn_match_batch(batch, torch.tensor([7, 3]), pool, 3)
    for row, item in enumerate(items):
        torch.testing.assert_close(out[row, : item.shape[0]], knn_match(item, pool, 3))
    assert out[1, 3:].abs().sum() == 0 and lengths.tolist() == [7, 3]


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        knn_match(torch.randn(3, 2), torch.randn(0, 2))
    with pytest.raises(ValueError, match="expected source"):
        knn_match(torch.randn(3, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="k must"):
        knn_match(torch.randn(3, 2), torch.randn(4, 2), k=0)
