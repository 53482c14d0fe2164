"""wav2vec2: distractor sampling, contrastive loss vs a loop and vs transformers, learning, health metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from objective_helpers import FAMILIES, MaskSpy, decreased, inputs_for, tiny_encoder, train_losses

from audiossl.errors import ConfigError
from audiossl.objectives import MaskConfig, create_objective
from audiossl.objectives.quantizer import QuantizerConfig
from audiossl.objectives.wav2vec2 import Wav2Vec2Config, contrastive_loss, sample_negatives

SPAN_MASK = MaskConfig(kind="span", start_prob=0.2, span_length=2, min_spans=1)


def _config(**overrides: object) -> Wav2Vec2Config:
    settings = {
        "mask": SPAN_MASK,
        "quantizer": QuantizerConfig(groups=2, entries=8, code_dim=16, temperature_decay=0.9),
        "project_dim": 16,
        "num_negatives": 5,
        **overrides,
    }
    return Wav2Vec2Config(**settings)


def _lengths(kind: str) -> list[int]:
    return [1600, 1200] if kind == "waveform" else [40, 28]


def test_sample_negatives_stay_in_the_masked_set_of_the_item() -> None:
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, [1, 2, 3, 7]] = True
    mask[1, [0, 5]] = True
    mask[2, [4]] = True  # a single masked frame: no distractor exists
    positions, valid = sample_negatives(mask, 50, torch.Generator().manual_seed(0))
    assert positions.shape == (3, 12, 50)
    assert valid.tolist() == (mask & torch.tensor([[True], [True], [False]])).tolist()
    for item in range(2):
        masked = set(mask[item].nonzero().flatten().tolist())
        for frame in masked:
            drawn = set(positions[item, frame].tolist())
            assert drawn <= masked - {frame}
    # Uniform over the others: frame 1 of item 0 sees 2, 3 and 7 about equally often.
    many, _ = sample_negatives(mask, 3000, torch.Generator().manual_seed(1))
    counts = torch.bincount(many[0, 1], minlength=12)[[2, 3, 7]].float() / 3000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.04)


def _reference_contrastive(context, targets, mask, negatives, kappa):
    """Slow loop over items and masked frames."""
    losses, hits = [], []
    for item in range(mask.shape[0]):
        masked = mask[item].nonzero().flatten().tolist()
        for frame in masked:
            candidates = [targets[item, frame]]
            if len(masked) >= 2:
                candidates += [targets[item, j] for j in negatives[item, frame].tolist()]
            logits = torch.stack([F.cosine_similarity(context[item, frame], c, dim=0) / kappa for c in candidates])
            for k in range(1, len(candidates)):
                if torch.equal(candidates[k], candidates[0]):
                    logits[k] = float("-inf")
            losses.append(-logits.log_softmax(dim=0)[0])
            hits.append(bool((logits[0] > logits[1:]).all()) if len(logits) > 1 else True)
    return torch.stack(losses).mean(), sum(hits) / len(hits)


def test_contrastive_loss_equals_reference_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(3, 10, 6, generator=generator)
    targets = torch.randn(3, 10, 6, generator=generator)
    targets[0, 4] = targets[0, 2]  # a distractor identical to the positive is excluded
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, [2, 3, 4, 5]] = True
    mask[1, [0, 1, 8]] = True
    mask[2, [6]] = True
    negatives, valid = sample_negatives(mask, 4, generator)
    loss, accuracy = contrastive_loss(context, targets, mask, negatives, valid, 0.1)
    expected_loss, expected_accuracy = _reference_contrastive(context, targets, mask, negatives, 0.1)
    torch.testing.assert_close(loss, expected_loss)
    assert float(accuracy) == pytest.approx(expected_accuracy)


def test_contrastive_loss_equals_transformers() -> None:
    """Same loss as Hugging Face's Wav2Vec2ForPreTraining for the same states and distractors."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    batch, length, dim, num_negatives = 2, 16, 8, 6
    generator = torch.Generator().manual_seed(3)
    context = torch.randn(batch, length, dim, generator=generator)
    targets = torch.randn(batch, length, dim, generator=generator)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[0, 2:9] = True
    mask[1, [1, 2, 3, 10, 11, 12]] = True
    flat = torch.from_numpy(_sample_negative_indices((batch, length), num_negatives, mask.numpy())).long()
    # Hugging Face's loss, step by step as in Wav2Vec2ForPreTraining.forward (sum over masked frames).
    negative_states = targets.view(-1, dim)[flat.view(-1)].view(batch, length, -1, dim).permute(2, 0, 1, 3)
    logits = transformers.Wav2Vec2ForPreTraining.compute_contrastive_logits(
        targets[None], negative_states, context, 0.1
    )
    neg_is_pos = (targets == negative_states).all(-1)
    logits[1:][neg_is_pos] = float("-inf")
    logits = logits.transpose(0, 2).reshape(-1, logits.size(0))
    labels = ((1 - mask.long()) * -100).transpose(0, 1).flatten()
    hf_loss = F.cross_entropy(logits.float(), labels, reduction="sum") / mask.sum()
    local = flat - torch.arange(batch).view(batch, 1, 1) * length  # global -> within-item positions
    loss, _ = contrastive_loss(context, targets, mask, local, mask.clone(), 0.1)
    torch.testing.assert_close(loss, hf_loss)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["waveform", "frame"])
def test_parts_metrics_and_no_mask_on_padding(family: str, kind: str) -> None:
    encoder = tiny_encoder(family, kind)
    objective = create_objective("wav2vec2", encoder, _config())
    features, lengths = inputs_for(encoder, _lengths(kind))
    spy = MaskSpy(encoder)
    out = objective(features, lengths, step=3, generator=torch.Generator().manual_seed(0))
    spy.close()
    assert torch.isfinite(out.total)
    expected_parts = {"contrastive", "diversity"} | ({"feature_penalty"} if kind == "waveform" else set())
    assert set(out.parts) == expected_parts
    total = out.parts["contrastive"] + 0.1 * out.parts["diversity"] + 10.0 * out.parts.get("feature_penalty", 0.0)
    torch.testing.assert_close(out.total, total)
    assert out.metrics["temperature"] == pytest.approx(2.0 * 0.9**3)
    assert 1.0 <= out.metrics["code_perplexity"] <= 16.0
    assert 0.0 <= out.metrics["contrastive_accuracy"] <= 1.0
    (mask,) = spy.masks
    token_lengths = encoder.token_lengths(lengths)
    assert not (mask & (torch.arange(mask.shape[1]) >= token_lengths.unsqueeze(1))).any()
    assert (mask.sum(dim=1) >= 2).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases(family: str) -> None:
    encoder = tiny_encoder(family, "waveform")
    objective = create_objective(
        "wav2vec2", encoder, _config(mask=MaskConfig(kind="span", start_prob=0.3, span_length=2))
    )
    features, lengths = inputs_for(encoder, [960, 800])
    history = train_losses(objective, features, lengths, steps=20, lr=5e-3)
    # The feature penalty alone drops fast; the contrastive task itself must be learnt too.
    assert decreased(history["total"], 0.8) and decreased(history["contrastive"], 0.7), history


def test_short_item_is_a_clear_error() -> None:
    encoder = tiny_encoder(FAMILIES[0], "frame")
    objective = create_objective(
        "wav2vec2", encoder, _config(mask=MaskConfig(kind="span", span_length=10, min_spans=2))
    )
    features, lengths = inputs_for(encoder, [60, 20])  # 30 and 10 tokens
    with pytest.raises(ConfigError, match=r"2 span\(s\) of 10 tokens in batch item 1: it has only 10 tokens"):
        objective(features, lengths)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_negatives"):
        Wav2Vec2Config(num_negatives=0)


@pytest.mark.parametrize("kind", ["waveform", "frame", "patch"])
def test_extra_padding_changes_nothing(kind: str) -> None:
    """A batch padded past its longest item gives the same mask and loss."""
    encoder = tiny_encoder(FAMILIES[0], kind)
    objective = create_objective("wav2vec2", encoder, _config()).eval()
    features, lengths = inputs_for(encoder, _lengths(kind) if kind != "patch" else [40, 28])
    extra = torch.full((features.shape[0], 160, *features.shape[2:]), 100.0)
    padded = torch.cat([features, extra], dim=1)
    results = []
    for batch in (features, padded):
        results.append(objective(batch, lengths, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(results[0].total, results[1].total)
