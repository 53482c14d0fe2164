"""The speaker head (padding invariance) and AAM-softmax against a hand-written formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from audiossl_sv.head import AAMSoftmax, SpeakerHead, SpeakerHeadConfig, margin_at


def test_speaker_head_shapes_and_padding():
    torch.manual_seed(2)
    head = SpeakerHead(16, SpeakerHeadConfig(hidden_dim=8, embedding_dim=6)).eval()
    frames = torch.randn(3, 10, 16)
    lengths = torch.tensor([10, 6, 3])
    out = head(frames, lengths)
    assert out.shape == (3, 6)
    torch.testing.assert_close(head(frames[2:, :3], lengths[2:]), out[2:])
    garbage = frames.clone()
    garbage[1, 6:] = float("nan")
    torch.testing.assert_close(head(garbage, lengths), out)


def test_speaker_head_single_item_training_batch():
    head = SpeakerHead(16, SpeakerHeadConfig(hidden_dim=8, embedding_dim=6)).train()
    out = head(torch.randn(1, 10, 16), torch.tensor([10]))
    assert out.shape == (1, 6) and torch.isfinite(out).all()


def _slow_aam(embeddings, weight, labels, scale, margin):
    total = 0.0
    for x, y in zip(embeddings, labels, strict=True):
        cosines = [float(F.cosine_similarity(x, w, dim=0)) for w in weight]
        theta = math.acos(max(-1.0, min(1.0, cosines[y])))
        if theta + margin <= math.pi:
            cosines[y] = math.cos(theta + margin)
        else:
            cosines[y] = cosines[y] - margin * math.sin(margin)
        logits = [scale * c for c in cosines]
        top = max(logits)
        total += -(logits[y] - top - math.log(sum(math.exp(v - top) for v in logits)))
    return total / len(labels)


@pytest.mark.parametrize(("scale", "margin"), [(30.0, 0.2), (10.0, 0.5), (5.0, 1.2)])
def test_aam_softmax_matches_formula(scale, margin):
    torch.manual_seed(3)
    loss_fn = AAMSoftmax(8, 5, scale=scale, margin=margin)
    embeddings = torch.randn(16, 8)
    labels = torch.randint(0, 5, (16,))
    expected = _slow_aam(embeddings, loss_fn.weight.detach(), labels.tolist(), scale, margin)
    assert loss_fn(embeddings, labels).item() == pytest.approx(expected, rel=1e-4)


def test_aam_softmax_margin_beyond_pi():
    # An embedding opposite its class centre: theta = pi, so theta + m > pi takes the linear branch.
    loss_fn = AAMSoftmax(2, 2, scale=1.0, margin=0.3)
    with torch.no_grad():
        loss_fn.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    logits = loss_fn.logits(torch.tensor([[-1.0, 0.0]]), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(-1.0 - 0.3 * math.sin(0.3))
    assert logits[0, 1].item() == pytest.approx(0.0, abs=1e-7)


def test_aam_zero_margin_is_scaled_cosine_softmax():
    torch.manual_seed(4)
    loss_fn = AAMSoftmax(8, 4, scale=20.0, margin=0.3)
    embeddings, labels = torch.randn(10, 8), torch.randint(0, 4, (10,))
    cosine = F.normalize(embeddings) @ F.normalize(loss_fn.weight).T
    expected = F.cross_entropy(20.0 * cosine, labels)
    torch.testing.assert_close(loss_fn(embeddings, labels, margin=0.0), expected)
    assert loss_fn(embeddings, labels).item() > expected.item()  # the margin makes the task harder


def test_margin_warmup():
    assert margin_at(0, 0.2, 100) == 0.0
    assert margin_at(50, 0.2, 100) == pytest.approx(0.1)
    assert margin_at(500, 0.2, 100) == pytest.approx(0.2)
    assert margin_at(0, 0.2, 0) == 0.2


def test_aam_gradients_flow():
    torch.manual_seed(5)
    loss_fn = AAMSoftmax(8, 4)
    embeddings = torch.randn(6, 8, requires_grad=True)
    loss_fn(embeddings, torch.randint(0, 4, (6,))).backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()
    assert loss_fn.weight.grad is not None and loss_fn.weight.grad.abs().sum() > 0
