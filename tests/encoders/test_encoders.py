"""Invariants every registered encoder keeps, for every input kind (parameterised over the registry)."""

from __future__ import annotations

import pytest
import torch

from audiossl.encoders import ENCODERS, create_encoder, list_encoders
from audiossl.errors import DataError
from audiossl.testing.configs import dummy_encoder_inputs, encoder_cases, tiny_encoder_config

CASES = encoder_cases()
SPECTROGRAM_LENGTHS = [64, 9, 33]  # frames: differ by a lot
WAVEFORM_LENGTHS = [4800, 800, 2100]  # samples


def build(family: str, kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_encoder(family, config=tiny_encoder_config(family, kind)).eval()


def inputs(encoder, lengths: list[int] | None = None, seed: int = 0):
    config = encoder.config.input
    if lengths is None:
        lengths = WAVEFORM_LENGTHS if config.kind == "waveform" else SPECTROGRAM_LENGTHS
    return dummy_encoder_inputs(config, lengths, seed=seed)


def alone(x: torch.Tensor, lengths: torch.Tensor, b: int):
    n = int(lengths[b])
    return x[b : b + 1, :n], lengths[b : b + 1]


def random_mask(token_lengths: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(len(token_lengths), int(token_lengths.max()), generator=generator) < 0.4  # (B, S)
    return mask & (torch.arange(mask.shape[1]) < token_lengths.unsqueeze(1))


def random_keep(token_lengths: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Sorted random kept indices, a different count per item, -1 padded."""
    generator = torch.Generator().manual_seed(seed)
    counts = [max(1, int(n) // 2 + b) for b, n in enumerate(token_lengths)]
    counts = [min(c, int(n)) for c, n in zip(counts, token_lengths, strict=True)]
    keep = torch.full((len(counts), max(counts)), -1)
    for b, (count, n) in enumerate(zip(counts, token_lengths, strict=True)):
        keep[b, :count] = torch.randperm(int(n), generator=generator)[:count].sort().values
    return keep


def assert_matches_alone(batch_out, item_out, b: int, atol: float = 1e-5) -> None:
    n = int(batch_out.lengths[b])
    assert int(item_out.lengths[0]) == n
    torch.testing.assert_close(batch_out.last[b, :n], item_out.last[0, :n], atol=atol, rtol=0)
    for batch_layer, item_layer in zip(batch_out.layers, item_out.layers, strict=True):
        torch.testing.assert_close(batch_layer[b, :n], item_layer[0, :n], atol=atol, rtol=0)


@pytest.mark.parametrize("family,kind", CASES)
def test_shapes_lengths_and_zero_padding(family, kind):
    encoder = build(family, kind)
    x, lengths = inputs(encoder)
    out = encoder(x, lengths)
    token_lengths = encoder.token_lengths(lengths)
    prefix = encoder.num_prefix_tokens
    assert out.num_prefix_tokens == prefix
    assert torch.equal(out.lengths, token_lengths + prefix)
    batch, length, dim = out.last.shape
    assert (batch, length, dim) == (3, int(token_lengths.max()) + prefix, encoder.dim)
    assert len(out.layers) == encoder.num_layers
    expected_padding = torch.arange(length).unsqueeze(0) >= out.lengths.unsqueeze(1)
    assert torch.equal(out.padding_mask, expected_padding)
    for hidden in [out.last, *out.layers]:
        assert hidden.shape == (batch, length, dim)
        assert torch.isfinite(hidden).all()
        assert (hidden[out.padding_mask] == 0).all()
    stripped = out.without_prefix()
    assert torch.equal(stripped.lengths, token_lengths)
    assert stripped.last.shape[1] == int(token_lengths.max())


@pytest.mark.parametrize("family,kind", CASES)
def test_padded_batch_equals_each_item_alone(family, kind):
    encoder = build(family, kind)
    x, lengths = inputs(encoder)
    with torch.no_grad():
        out = encoder(x, lengths)
        for b in range(len(lengths)):
            assert_matches_alone(out, encoder(*alone(x, lengths, b)), b)


@pytest.mark.parametrize("family,kind", CASES)
def test_padded_batch_equals_each_item_alone_with_mask(family, kind):
    encoder = build(family, kind)
    x, lengths = inputs(encoder)
    token_lengths = encoder.token_lengths(lengths)
    mask = random_mask(token_lengths)
    with torch.no_grad():
        out = encoder(x, lengths, mask=mask)
        unmasked = encoder(x, lengths)
        assert not torch.allclose(out.last, unmasked.last), "the mask changed nothing"
        for b in range(len(lengths)):
            n = int(token_lengths[b])
            assert_matches_alone(out, encoder(*alone(x, lengths, b), mask=mask[b : b + 1, :n]), b)


@pytest.mark.parametrize("family,kind", CASES)
def test_padded_batch_equals_each_item_alone_with_keep_indices(family, kind):
    encoder = build(family, kind)
    x, lengths = inputs(encoder)
    keep = random_keep(encoder.token_lengths(lengths))
    with torch.no_grad():
        out = encoder(x, lengths, keep_indices=keep)
        kept_counts = (keep >= 0).sum(1)
        assert torch.equal(out.lengths, kept_counts + encoder.num_prefix_tokens)
        assert torch.equal(out.kept_indices, keep)
        assert out.last.shape[1] == keep.shape[1] + encoder.num_prefix_tokens
        for b in range(len(lengths)):
            item_keep = keep[b : b + 1, : int(kept_counts[b])]
            assert_matches_alone(out, encoder(*alone(x, lengths, b), keep_indices=item_keep), b)


@pytest.mark.parametrize("family,kind", CASES)
def test_zero_token_item_raises_naming_it(family, kind):
    encoder = build(family, kind)
    short = 1 if kind != "waveform" else 10  # too short for one patch, frame pair or CNN frame
    x, lengths = inputs(encoder, [64 if kind != "waveform" else 4800, short])
    assert int(encoder.token_lengths(lengths)[1]) == 0
    with pytest.raises(DataError, match="item 1"):
        encoder(x, lengths)


def _shortest_input(encoder) -> int:
    """Fewest frames (samples) giving at least one token."""
    n = 1
    while int(encoder.token_lengths(torch.tensor([n]))[0]) == 0:
        n += 1
    return n


@pytest.mark.parametrize("family,kind", CASES)
def test_one_token_input_is_defined(family, kind):
    encoder = build(family, kind)
    shortest = _shortest_input(encoder)
    x, lengths = inputs(encoder, [shortest * 7, shortest])
    with torch.no_grad():
        out = encoder(x, lengths)
        single = encoder(*alone(x, lengths, 1))
    assert torch.isfinite(out.last).all()
    assert int(single.lengths[0]) == int(encoder.token_lengths(lengths[1:])[0]) + encoder.num_prefix_tokens
    assert_matches_alone(out, single, 1)


@pytest.mark.parametrize("family,kind", CASES)
def test_bf16_autocast_on_cpu_is_close_to_fp32(family, kind):
    encoder = build(family, kind)
    x, lengths = inputs(encoder)
    with torch.no_grad():
        reference = encoder(x, lengths).last
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = encoder(x, lengths).last
    assert torch.isfinite(low).all()
    relative_error = (low.float() - reference).norm() / reference.norm()
    assert relative_error < 0.05, f"bf16 relative error {relative_error:.3f}"


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("family,kind", CASES)
def test_gradients_reach_every_parameter(family, kind, use_mask):
    encoder = build(family, kind).train()
    x, lengths = inputs(encoder)
    mask = random_mask(encoder.token_lengths(lengths)) if use_mask else None
    out = encoder(x, lengths, mask=mask)
    weights = torch.randn(out.last.shape, generator=torch.Generator().manual_seed(1))
    (out.last * weights).sum().backward()
    missing = [
        name
        for name, parameter in encoder.named_parameters()
        if (parameter.grad is None or not parameter.grad.abs().sum() > 0)
        and not (name.endswith("mask_embedding") and not use_mask)
    ]
    assert not missing, f"no gradient for {missing}"
    if not use_mask:
        assert encoder.embedding.mask_embedding.grad is None


@pytest.mark.parametrize("family,kind", CASES)
def test_state_dict_round_trip(family, kind):
    source = build(family, kind, seed=0)
    target = build(family, kind, seed=1)
    x, lengths = inputs(source)
    with torch.no_grad():
        assert not torch.allclose(source(x, lengths).last, target(x, lengths).last)
        target.load_state_dict(source.state_dict())
        assert torch.equal(source(x, lengths).last, target(x, lengths).last)


def test_mask_and_keep_indices_together_are_refused():
    encoder = build("ast", "patch")
    x, lengths = inputs(encoder)
    token_lengths = encoder.token_lengths(lengths)
    with pytest.raises(ValueError, match="either mask or keep_indices"):
        encoder(x, lengths, mask=random_mask(token_lengths), keep_indices=random_keep(token_lengths))


# Parameter ranges (millions). AST as SSAST (which counts ~0.9 M of position table and ~1.6 M
# of pretraining heads on top of the encoder proper in its 89 M); the other families comparable.
AST_RANGES = {"tiny": (5.0, 6.5), "small": (20.0, 24.0), "base": (84.0, 90.0)}
COMPARABLE_RANGES = {"tiny": (4.0, 8.0), "small": (16.0, 30.0), "base": (70.0, 100.0)}


def test_preset_parameter_counts():
    rows = list_encoders()
    families = {family for family, _, _ in rows}
    assert families == set(ENCODERS.names())
    for family, preset, count in rows:
        if preset not in COMPARABLE_RANGES:
            continue
        low, high = (AST_RANGES if family == "ast" else COMPARABLE_RANGES)[preset]
        assert low <= count / 1e6 <= high, f"{family} {preset}: {count / 1e6:.2f} M not in [{low}, {high}]"
    for family in ENCODERS.names():
        presets = {preset for f, preset, _ in rows if f == family}
        assert {"tiny", "small", "base"} <= presets


@pytest.mark.parametrize("family", ENCODERS.names())
def test_meta_device_count_equals_a_real_build(family):
    torch.manual_seed(0)
    real = create_encoder(family, "tiny")
    counted = {(f, p): n for f, p, n in list_encoders()}[(family, "tiny")]
    assert counted == sum(p.numel() for p in real.parameters())
