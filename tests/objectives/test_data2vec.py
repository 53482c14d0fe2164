"""data2vec: target construction (top-K average of instance-normed layers) against a loop, the loss against
a per-token loop, the teacher (unmasked input, no gradient, EMA schedule), padding invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from objective_helpers import MaskSpy, inputs_for, tiny_encoder

from audiossl.errors import ConfigError
from audiossl.objectives import create_objective
from audiossl.objectives.data2vec import Data2vecConfig, data2vec_targets, ema_decay_at, masked_instance_norm

SPANS = {"kind": "span", "start_prob": 0.2, "span_length": 2, "min_spans": 1}


def objective(family: str = "conformer", kind: str = "frame", **changes):
    torch.manual_seed(0)
    settings = {"mask": SPANS, "top_k": 2, **changes}
    return create_objective("data2vec", tiny_encoder(family, kind), settings)


def loop_targets(layers: list[np.ndarray], lengths: list[int], top_k: int, eps: float = 1e-5) -> np.ndarray:
    """Slow reference: per item, per layer, per channel normalisation over valid frames, then the mean."""
    batch, steps, dim = layers[0].shape
    out = np.zeros((batch, steps, dim))
    for b in range(batch):
        n = lengths[b]
        total = np.zeros((n, dim))
        for layer in layers[-top_k:]:
            normed = np.zeros((n, dim))
            for d in range(dim):
                column = layer[b, :n, d].astype(np.float64)
                normed[:, d] = (column - column.mean()) / math.sqrt(column.var() + eps)
            total += normed
        out[b, :n] = total / top_k
    return out


def test_targets_equal_a_loop_and_ignore_padding():
    generator = torch.Generator().manual_seed(0)
    lengths = [7, 4, 5]
    layers = [torch.randn(3, 7, 5, generator=generator) * (i + 1) + i for i in range(4)]  # (B, S, D) each
    for layer in layers:  # padding holds garbage that must not leak into the statistics
        for b, n in enumerate(lengths):
            layer[b, n:] = 1000.0
    got = data2vec_targets(layers, torch.tensor(lengths), top_k=3)
    want = loop_targets([layer.numpy() for layer in layers], lengths, top_k=3)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    assert float(got[1, 4:].abs().sum()) == 0.0
    # A padded item gives the same targets as the item alone.
    alone = data2vec_targets([layer[1:2, :4] for layer in layers], torch.tensor([4]), top_k=3)
    torch.testing.assert_close(got[1:2, :4], alone)


def test_final_target_norms():
    generator = torch.Generator().manual_seed(1)
    layers = [torch.randn(2, 6, 4, generator=generator) for _ in range(3)]
    lengths = torch.tensor([6, 3])
    instance = data2vec_targets(layers, lengths, 2, target_norm="instance")
    averaged = data2vec_targets(layers, lengths, 2)
    torch.testing.assert_close(instance, masked_instance_norm(averaged, lengths))
    layer = data2vec_targets(layers, lengths, 2, target_norm="layer")
    assert torch.allclose(layer[0].mean(dim=-1), torch.zeros(6), atol=1e-5)


def test_loss_equals_a_per_token_loop():
    model = objective()
    model.eval()  # no dropout: the loop's encoder pass must be the objective's
    features, lengths = inputs_for(model.encoder, [30, 18])
    generator = torch.Generator().manual_seed(3)
    targets, token_lengths = model.targets(features, lengths)
    mask = model.sample_mask(token_lengths, targets.shape[1], generator)
    out = model.loss_with_mask(features, lengths, mask, targets)
    hidden = model.encoder(features, lengths, mask=mask).last
    losses = []
    for b in range(2):
        for s in range(int(token_lengths[b])):
            if mask[b, s]:
                prediction = model.head(hidden[b, s])
                losses.append(((prediction - targets[b, s]) ** 2).sum() / math.sqrt(targets.shape[-1]))
    assert len(losses) == int(mask.sum()) > 0
    torch.testing.assert_close(out.total, torch.stack(losses).mean())


def test_smooth_l1_loss_equals_a_loop():
    model = objective(loss_beta=0.5, loss_scale=1.0)
    model.eval()
    features, lengths = inputs_for(model.encoder, [24])
    targets, token_lengths = model.targets(features, lengths)
    mask = model.sample_mask(token_lengths, targets.shape[1], torch.Generator().manual_seed(0))
    out = model.loss_with_mask(features, lengths, mask, targets)
    hidden = model.encoder(features, lengths, mask=mask).last
    losses = []
    for s in mask[0].nonzero().flatten().tolist():
        diff = (model.head(hidden[0, s]) - targets[0, s]).abs()
        losses.append(torch.where(diff < 0.5, 0.5 * diff**2 / 0.5, diff - 0.25).sum())
    torch.testing.assert_close(out.total, torch.stack(losses).mean())


def test_teacher_sees_the_unmasked_input_and_gets_no_gradient():
    model = objective()
    model.train()
    student, teacher = MaskSpy(model.encoder), MaskSpy(model.teacher)
    features, lengths = inputs_for(model.encoder, [30, 20])
    out = model(features, lengths, step=1, generator=torch.Generator().manual_seed(0))
    student.close(), teacher.close()
    assert teacher.masks == [None]
    assert student.masks[0] is not None and bool(student.masks[0].any())
    assert not model.teacher.training  # always eval: no dropout in the targets
    out.total.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.encoder.parameters())
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in model.teacher.parameters()}


def test_ema_update_follows_the_linear_schedule():
    model = objective(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    assert model.decay_at(1) == pytest.approx(0.9)
    assert model.decay_at(6) == pytest.approx(0.9 + 0.09 * 5 / 10)
    assert model.decay_at(10) == model.decay_at(50) == pytest.approx(0.99)
    assert ema_decay_at(3, 0.5, 0.5, 4) == 0.5
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [t.clone() for t in model.teacher.parameters()]
    model.on_step_end(6)
    decay = 0.9 + 0.09 * 5 / 10
    for old, new, student in zip(before, model.teacher.parameters(), model.encoder.parameters(), strict=True):
        torch.testing.assert_close(new, decay * old + (1 - decay) * student)


def test_the_student_learns_the_teachers_targets():
    model = objective("ast", "frame")
    features, lengths = inputs_for(model.encoder, [24, 16])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(10):
        out = model(features, lengths, step=step, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append(float(out.total.detach()))
    assert np.mean(losses[-3:]) < 0.7 * losses[0]


@pytest.mark.parametrize(("family", "kind"), [("ast", "patch"), ("mamba", "frame"), ("conformer", "waveform")])
def test_every_encoder_family_and_input_kind_trains(family: str, kind: str):
    model = objective(family, kind)
    features, lengths = inputs_for(model.encoder, [1600, 1200] if kind == "waveform" else [24, 16])
    out = model(features, lengths, step=1, generator=torch.Generator().manual_seed(0))
    out.total.backward()
    assert torch.isfinite(out.total) and out.metrics["masked_tokens"] > 0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.encoder.parameters())


def test_bad_configs_are_errors():
    with pytest.raises(ConfigError, match="top_k"):
        Data2vecConfig(top_k=0)
    with pytest.raises(ConfigError, match="ema_decay"):
        Data2vecConfig(ema_decay=0.9999, ema_end_decay=0.999)
    with pytest.raises(ConfigError, match="target_norm"):
        Data2vecConfig(target_norm="batch")


def test_top_k_beyond_the_encoder_averages_every_block(caplog):
    model = objective(top_k=5)  # the tiny encoder has 2 blocks
    assert model.top_k == 2 and "top_k 5" in caplog.text
    features, lengths = inputs_for(model.encoder, [20])
    layers = model.teacher(features, lengths).layers
    torch.testing.assert_close(model.targets(features, lengths)[0], data2vec_targets(layers, lengths, 2))
