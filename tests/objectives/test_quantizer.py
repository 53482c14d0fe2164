"""Gumbel product quantizer: perplexity by hand, temperature schedule, straight-through gradients."""

from __future__ import annotations

import math

import pytest
import torch

from audiossl.errors import ConfigError
from audiossl.objectives.quantizer import GumbelVectorQuantizer, QuantizerConfig, gumbel_temperature, perplexity


def test_perplexity_by_hand() -> None:
    # Group 0 uses codes [0, 0, 1, 2] (the fifth frame is padding), group 1 uses [3, 3, 3, 3].
    codes = torch.tensor([[[0, 3], [0, 3], [1, 3], [2, 3], [1, 0]]])  # (B=1, S=5, G=2)
    probs = torch.nn.functional.one_hot(codes, 4).float()  # (1, 5, 2, 4)
    valid = torch.tensor([[True, True, True, True, False]])
    group0 = math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))  # 2 * sqrt(2)
    assert perplexity(probs, valid).item() == pytest.approx(group0 + 1.0, rel=1e-6)
    # Soft distributions: the marginal is the average of the valid frames' distributions.
    soft = torch.tensor([[[[0.7, 0.3]], [[0.1, 0.9]], [[0.5, 0.5]]]])  # (1, 3, 1, 2)
    marginal = [(0.7 + 0.1) / 2, (0.3 + 0.9) / 2]
    expected = math.exp(-sum(p * math.log(p) for p in marginal))
    assert perplexity(soft, torch.tensor([[True, True, False]])).item() == pytest.approx(expected, rel=1e-6)


def test_temperature_schedule() -> None:
    assert gumbel_temperature(0, 2.0, 0.5, 0.999995) == 2.0
    assert gumbel_temperature(None, 2.0, 0.5, 0.999995) == 2.0
    assert gumbel_temperature(1000, 2.0, 0.5, 0.999) == pytest.approx(2.0 * 0.999**1000)
    assert gumbel_temperature(10**7, 2.0, 0.5, 0.999995) == 0.5  # floored
    quantizer = GumbelVectorQuantizer(8, QuantizerConfig(groups=2, entries=4, code_dim=8, temperature_decay=0.9))
    temperatures = [quantizer.temperature(step) for step in range(0, 30, 3)]
    assert temperatures == sorted(temperatures, reverse=True) and temperatures[-1] == 0.5
    out = quantizer(torch.randn(1, 3, 8), step=5)
    assert out.temperature == pytest.approx(2.0 * 0.9**5)


def test_forward_picks_codebook_rows_and_gradients_flow_straight_through() -> None:
    torch.manual_seed(0)
    config = QuantizerConfig(groups=2, entries=5, code_dim=6)
    quantizer = GumbelVectorQuantizer(4, config).train()
    frames = torch.randn(2, 7, 4, requires_grad=True)
    generator = torch.Generator().manual_seed(1)
    out = quantizer(frames, step=0, generator=generator)
    assert out.quantized.shape == (2, 7, 6) and out.codes.shape == (2, 7, 2) and out.logits.shape == (2, 7, 2, 5)
    # Forward: exactly the chosen entries of each group, concatenated.
    expected = torch.cat([quantizer.codebook[g][out.codes[..., g]] for g in range(2)], dim=-1)
    torch.testing.assert_close(out.quantized, expected)
    # Backward: the hard choice passes the soft sample's gradient to the logits (and the input).
    weights = torch.randn(6)
    (out.quantized * weights).sum().backward()
    assert quantizer.logits.weight.grad is not None and quantizer.logits.weight.grad.abs().sum() > 0
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    assert quantizer.codebook.grad.abs().sum() > 0
    # Same generator seed, same sample.
    again = quantizer(frames, step=0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.codes, out.codes)


def test_eval_takes_argmax_and_diversity_bounds() -> None:
    quantizer = GumbelVectorQuantizer(4, QuantizerConfig(groups=1, entries=4, code_dim=4)).eval()
    frames = torch.randn(3, 5, 4)
    out = quantizer(frames)
    assert torch.equal(out.codes, out.logits.argmax(dim=-1))
    # Uniform use of all entries -> no diversity loss; a single entry -> (V - 1) / V.
    with torch.no_grad():
        quantizer.logits.weight.zero_()
        quantizer.logits.bias.zero_()
    uniform = quantizer(frames)
    assert uniform.diversity_loss(1, 4).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        quantizer.logits.bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    collapsed = quantizer(frames)
    assert collapsed.diversity_loss(1, 4).item() == pytest.approx(0.75, abs=1e-4)
    assert collapsed.code_perplexity.item() == pytest.approx(1.0)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        QuantizerConfig(groups=2, entries=4, code_dim=5)
    with pytest.raises(ConfigError, match="temperature"):
        QuantizerConfig(min_temperature=3.0, max_temperature=2.0)
