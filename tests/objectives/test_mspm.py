"""mspm: one-pass InfoNCE + MSE equals a per-item loop, ignores padding, learns, and fails clearly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from objective_helpers import FAMILIES, MaskSpy, decreased, inputs_for, tiny_encoder, train_losses

from audiossl.errors import ConfigError
from audiossl.objectives import MaskConfig, create_objective
from audiossl.objectives.mspm import MSPMConfig, gather_masked, info_nce

# Tiny patches are 4 frames x 8 bins over 32 bins: 4 frequency patches per 4 frames.
LENGTHS = [64, 44, 30]


def _objective(family: str, kind: str, **mask: object):
    encoder = tiny_encoder(family, kind)
    mask_config = MaskConfig(**{"kind": "chunk", "count": 16, "ratio": 0.5, "chunk_min": 2, "chunk_max": 3, **mask})
    return create_objective("mspm", encoder, MSPMConfig(mask=mask_config, generative_weight=10.0)).eval()


def _reference(objective, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor):
    """Slow per-item loop: every item alone (unpadded) through the encoder, then its masked set."""
    nce_terms, mse_terms, hits = [], [], []
    for item in range(features.shape[0]):
        alone = features[item : item + 1, : int(lengths[item])]
        targets, token_lengths = objective.targets(alone, lengths[item : item + 1])
        item_mask = mask[item : item + 1, : int(token_lengths[0])]
        hidden = objective.encoder(alone, lengths[item : item + 1], mask=item_mask).without_prefix().last[0]
        where = item_mask[0].nonzero().flatten()
        true = targets[0, where]  # (M, P)
        scores = objective.discriminative_head(hidden[where]) @ true.T  # (M, M)
        nce_terms.append(F.cross_entropy(scores, torch.arange(len(where)), reduction="none"))
        hits.append(scores.argmax(dim=1) == torch.arange(len(where)))
        mse_terms.append((objective.generative_head(hidden[where]) - true).pow(2).mean(dim=1))
    return torch.cat(nce_terms).mean(), torch.cat(mse_terms).mean(), torch.cat(hits).float().mean()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["patch", "frame"])
def test_vectorised_loss_equals_per_item_loop(family: str, kind: str) -> None:
    objective = _objective(family, kind)
    features, lengths = inputs_for(objective.encoder, LENGTHS)
    targets, token_lengths = objective.targets(features, lengths)
    mask = objective.sample_mask(token_lengths, targets.shape[1], torch.Generator().manual_seed(0))
    # Items mask different numbers of tokens (the ratio caps the count of short items).
    assert len(set(mask.sum(dim=1).tolist())) > 1
    out = objective.loss_with_mask(features, lengths, mask, targets)
    discriminative, generative, accuracy = _reference(objective, features, lengths, mask)
    torch.testing.assert_close(out.parts["discriminative"], discriminative, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.parts["generative"], generative, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.total, discriminative + 10.0 * generative, rtol=1e-4, atol=1e-4)
    assert out.metrics["discriminative_accuracy"] == pytest.approx(float(accuracy))
    assert out.metrics["reconstruction_mse"] == pytest.approx(float(generative.detach()), rel=1e-4)


def test_info_nce_with_an_item_without_masked_tokens_has_finite_gradients() -> None:
    predictions = torch.randn(2, 3, 5, requires_grad=True)
    targets = torch.randn(2, 3, 5)
    slots = torch.tensor([[True, True, True], [False, False, False]])
    loss, _ = info_nce(predictions, targets, slots)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(predictions.grad).all()
    assert predictions.grad[1].abs().sum() == 0


def test_gather_masked_packs_in_order() -> None:
    values = torch.arange(12.0).view(2, 6)
    mask = torch.tensor([[False, True, False, True, True, False], [True, False, False, False, False, False]])
    packed, positions, slots = gather_masked(values, mask)
    assert positions.tolist() == [[1, 3, 4], [0, 0, 0]]
    assert slots.tolist() == [[True, True, True], [True, False, False]]
    assert packed[0].tolist() == [1.0, 3.0, 4.0] and packed[1, 0] == 6.0


@pytest.mark.parametrize("family", FAMILIES)
def test_masks_never_touch_padding(family: str) -> None:
    objective = _objective(family, "patch")
    features, lengths = inputs_for(objective.encoder, LENGTHS)
    spy = MaskSpy(objective.encoder)
    for seed in range(5):
        out = objective(features, lengths, generator=torch.Generator().manual_seed(seed))
        assert torch.isfinite(out.total)
    spy.close()
    token_lengths = objective.encoder.token_lengths(lengths)
    for mask in spy.masks:
        positions = torch.arange(mask.shape[1])
        assert not (mask & (positions >= token_lengths.unsqueeze(1))).any()
        assert (mask.sum(dim=1) == torch.minimum(torch.tensor(16), token_lengths // 2)).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases(family: str) -> None:
    objective = _objective(family, "patch").train()
    features, lengths = inputs_for(objective.encoder, [64, 48])
    history = train_losses(objective, features, lengths, steps=20, lr=5e-3)
    assert decreased(history["total"], 0.8), history
    assert decreased(history["discriminative"], 0.9) and decreased(history["generative"], 0.9), history


def test_too_many_masked_tokens_is_a_clear_error() -> None:
    encoder = tiny_encoder("ast", "patch")
    objective = create_objective("mspm", encoder, {"mask": {"kind": "random", "count": 40}})
    features, lengths = inputs_for(encoder, [64, 36])  # 64 and 36 tokens
    with pytest.raises(ConfigError, match=r"40 tokens of batch item 1: it has only 36 tokens"):
        objective(features, lengths)


def test_waveform_encoder_is_rejected() -> None:
    encoder = tiny_encoder(FAMILIES[0], "waveform")
    with pytest.raises(ConfigError, match="waveform"):
        create_objective("mspm", encoder)
