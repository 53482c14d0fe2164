"""The CTC head: shapes, padding invariance, the loss against torch's per-item CTC, and unalignable targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audiossl.errors import ConfigError, DataError
from audiossl_asr.head import CTCHead, CTCHeadConfig, check_alignable, ctc_loss, stack_frames


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kind", ["linear", "mlp", "bilstm"])
def test_padded_batch_equals_items_alone(kind, stride):
    torch.manual_seed(0)
    head = CTCHead(8, 6, CTCHeadConfig(kind=kind, hidden=5, layers=2, stride=stride)).eval()
    frames = torch.randn(3, 7, 8)  # (B, S, D)
    lengths = torch.tensor([7, 4, 2])
    frames[1, 4:] = 100.0  # garbage in the padding must not leak into valid frames
    log_probs, out_lengths = head(frames, lengths)
    expected = torch.tensor([-(-n // stride) for n in lengths.tolist()])  # ceil(n / stride)
    assert log_probs.shape == (3, -(-7 // stride), 6) and torch.equal(out_lengths, expected)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]), atol=1e-5)
    for b in range(3):
        alone, _ = head(frames[b : b + 1, : lengths[b]], lengths[b : b + 1])
        assert torch.allclose(alone[0], log_probs[b, : expected[b]], atol=1e-5)


def test_stacking_concatenates_consecutive_frames():
    frames = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # (B, S, D)
    stacked, lengths = stack_frames(frames, torch.tensor([5, 3]), 2)
    assert stacked.shape == (2, 3, 6) and lengths.tolist() == [3, 2]
    assert torch.equal(stacked[0, 1], torch.cat([frames[0, 2], frames[0, 3]]))
    assert torch.equal(stacked[0, 2], torch.cat([frames[0, 4], torch.zeros(3)]))  # the partial group is zero-filled
    assert torch.equal(stacked[1, 1], torch.cat([frames[1, 2], torch.zeros(3)]))  # frame 3 of item 1 is padding


def test_spec_augment_masks_in_training_only():
    torch.manual_seed(0)
    head = CTCHead(16, 5, CTCHeadConfig(kind="linear", stride=1, dropout=0.0))
    frames, lengths = torch.randn(4, 50, 16), torch.full((4,), 50)
    head.eval()
    first, _ = head(frames, lengths)
    assert torch.equal(first, head(frames, lengths)[0])  # eval: deterministic, no masks
    head.train()
    masked = head.augment(frames, lengths)
    zeroed = masked == 0
    assert zeroed.any() and not torch.equal(masked, frames)
    # every masked cell lies in a wholly masked frame or a wholly masked feature dimension
    rows, columns = zeroed.all(dim=-1, keepdim=True), zeroed.all(dim=1, keepdim=True)  # (B, S, 1), (B, 1, D)
    assert torch.equal(zeroed, rows | columns)
    assert rows.sum(dim=1).max() <= 2 * 5  # two time masks of at most 10% of 50 frames


def test_loss_matches_torch_per_item_and_ignores_padding():
    torch.manual_seed(1)
    log_probs = torch.randn(2, 9, 5).log_softmax(-1).requires_grad_()  # (B, S, V)
    lengths = torch.tensor([9, 6])
    targets = [[1, 2, 2, 3], [4]]
    loss = ctc_loss(log_probs, lengths, targets, ["u1", "u2"])
    expected = (
        sum(
            F.ctc_loss(log_probs[b, : lengths[b]], torch.tensor(t), lengths[b], torch.tensor(len(t)), reduction="sum")
            / len(t)
            for b, t in enumerate(targets)
        )
        / 2
    )
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    assert log_probs.grad[1, 6:].abs().sum() == 0
    padded = log_probs.detach().clone()
    padded[1, 6:] = float("nan")
    assert torch.allclose(ctc_loss(padded, lengths, targets, ["u1", "u2"]), loss, atol=1e-6)


def test_too_many_units_names_the_utterance():
    check_alignable(["ok"], [[1, 2, 3]], torch.tensor([3]))
    with pytest.raises(DataError, match="'long'.*4 frames needed.*only 3 frames"):
        check_alignable(["ok", "long"], [[1], [1, 1, 2]], torch.tensor([3, 3]), frame_rate=50.0)
    with pytest.raises(DataError, match="'u2'"):
        ctc_loss(torch.zeros(2, 2, 4), torch.tensor([2, 2]), [[1], [1, 2, 3]], ["u1", "u2"])


def test_bad_head_config():
    with pytest.raises(ConfigError, match="transformer"):
        CTCHeadConfig(kind="transformer")
