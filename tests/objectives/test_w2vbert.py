"""w2vbert: masked code prediction vs a loop, the contrastive loss really sits at a middle layer, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from objective_helpers import FAMILIES, decreased, inputs_for, tiny_encoder, train_losses
from torch import nn

from audiossl.errors import ConfigError
from audiossl.objectives import MaskConfig, create_objective
from audiossl.objectives.quantizer import QuantizerConfig
from audiossl.objectives.w2vbert import W2VBertConfig, masked_code_loss


def _config(**overrides: object) -> W2VBertConfig:
    settings = {
        "mask": MaskConfig(kind="span", start_prob=0.3, span_length=2, min_spans=1),
        "quantizer": QuantizerConfig(groups=1, entries=16, code_dim=16),
        "project_dim": 16,
        "num_negatives": 5,
        "contrastive_layer": 1,
        **overrides,
    }
    return W2VBertConfig(**settings)


def test_masked_code_loss_equals_reference_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 3, 5, generator=generator)  # (B, S, G, V)
    codes = torch.randint(0, 5, (2, 7, 3), generator=generator)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, [1, 2, 6]] = True
    mask[1, [0]] = True
    terms, hits = [], []
    for item in range(2):
        for frame in mask[item].nonzero().flatten().tolist():
            for group in range(3):
                terms.append(F.cross_entropy(logits[item, frame, group], codes[item, frame, group]))
                hits.append(int(logits[item, frame, group].argmax()) == int(codes[item, frame, group]))
    loss, accuracy = masked_code_loss(logits, codes, mask)
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    assert float(accuracy) == pytest.approx(sum(hits) / len(hits))


@pytest.mark.parametrize("family", FAMILIES)
def test_contrastive_part_stops_at_its_layer(family: str) -> None:
    encoder = tiny_encoder(family, "frame")
    objective = create_objective("w2vbert", encoder, _config(contrastive_layer=1))
    features, lengths = inputs_for(encoder, [40, 30])
    out = objective(features, lengths, step=0, generator=torch.Generator().manual_seed(0))
    assert set(out.parts) == {"contrastive", "diversity", "mlm"}
    assert {"mlm_accuracy", "contrastive_accuracy", "code_perplexity", "temperature"} <= set(out.metrics)
    torch.testing.assert_close(out.total, out.parts["contrastive"] + 0.1 * out.parts["diversity"] + out.parts["mlm"])
    # The contrastive loss reads block 1 of 2: it must not reach the second block.
    blocks = next(m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) == encoder.num_layers)
    last_block, first_block = list(blocks[-1].parameters()), list(blocks[0].parameters())
    grads = torch.autograd.grad(out.parts["contrastive"], last_block + first_block, allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads[: len(last_block)])
    assert any(g is not None and g.abs().sum() > 0 for g in grads[len(last_block) :])
    # The masked prediction loss trains the whole stack.
    grads = torch.autograd.grad(out.parts["mlm"], last_block, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases(family: str) -> None:
    encoder = tiny_encoder(family, "waveform")
    objective = create_objective("w2vbert", encoder, _config())
    features, lengths = inputs_for(encoder, [960, 800])
    history = train_losses(objective, features, lengths, steps=20, lr=5e-3)
    assert decreased(history["total"], 0.8) and decreased(history["contrastive"], 0.7), history
    assert decreased(history["mlm"], 0.9), history


def test_layer_past_the_encoder_is_an_error() -> None:
    encoder = tiny_encoder(FAMILIES[0], "frame")
    with pytest.raises(ConfigError, match=r"contrastive_layer 5 is past the encoder's 2 blocks"):
        create_objective("w2vbert", encoder, _config(contrastive_layer=5))
    with pytest.raises(ConfigError, match="contrastive_layer"):
        W2VBertConfig(contrastive_layer=0)
