"""The wav2vec2 family's own parts against slow references (the shared invariants run in test_encoders.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from audiossl.audio.cnn import ConvBlock
from audiossl.encoders import create_encoder
from audiossl.encoders.wav2vec2 import (
    LengthAwareGroupNormBlock,
    relative_position_buckets,
    wav2vec2_base,
    wav2vec2_large,
    wavlm_base,
)
from audiossl.errors import ConfigError
from audiossl.testing.configs import dummy_encoder_inputs


def slow_bucket(distance: int, num_buckets: int, max_distance: int) -> int:
    """WavLM's bucket of one key-minus-query distance, written from the paper's formula, one number at a time."""
    half = num_buckets // 2
    offset = half if distance > 0 else 0
    distance = abs(distance)
    exact = half // 2
    if distance < exact:
        return offset + distance
    large = exact + int(math.log(distance / exact) / math.log(max_distance / exact) * (half - exact))
    return offset + min(large, half - 1)


@pytest.mark.parametrize("num_buckets,max_distance", [(320, 800), (16, 40)])
def test_relative_position_buckets_equal_a_slow_loop(num_buckets, max_distance):
    length = 130
    buckets = relative_position_buckets(length, num_buckets, max_distance)
    expected = torch.tensor(
        [[slow_bucket(j - i, num_buckets, max_distance) for j in range(length)] for i in range(length)]
    )
    assert torch.equal(buckets, expected)
    assert int(buckets.max()) < num_buckets


def test_length_aware_group_norm_equals_group_norm_alone_and_ignores_padding():
    torch.manual_seed(0)
    block = ConvBlock(1, 6, 10, 5, False, nn.GroupNorm(6, 6), 0.0)
    with torch.no_grad():
        block.norm.weight.normal_()
        block.norm.bias.normal_()
    aware = LengthAwareGroupNormBlock(block).eval()
    audio = torch.randn(2, 1, 400)
    lengths = torch.tensor([400, 255])
    audio[1, :, 255:] = 50.0  # loud padding must not move the statistics
    out, out_lengths = aware(audio, lengths)
    for b, n in enumerate(lengths.tolist()):
        reference, reference_lengths = block(audio[b : b + 1, :, :n], lengths[b : b + 1])  # nn.GroupNorm, item alone
        frames = int(out_lengths[b])
        assert frames == int(reference_lengths[0]) == reference.shape[-1]
        torch.testing.assert_close(out[b, :, :frames], reference[0], atol=1e-5, rtol=0)


def test_group_norm_model_padded_batch_equals_each_item_alone():
    config = wavlm_base()
    options = {"conv_layers": [(16, 10, 5), (16, 3, 2), (16, 2, 2)], "mode": "group_norm"}
    config = dataclasses.replace(
        config,
        input=dataclasses.replace(config.input, frontend_options=options, conv_pos_kernel=8, conv_pos_groups=4),
        dim=32,
        num_layers=2,
        num_heads=4,
        ffn_dim=48,
        num_buckets=16,
        max_distance=40,
    )
    torch.manual_seed(0)
    encoder = create_encoder("wav2vec2", config=config).eval()
    x, lengths = dummy_encoder_inputs(config.input, [3000, 1100, 2200])
    with torch.no_grad():
        batch = encoder(x, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone = encoder(x[b : b + 1, :n], lengths[b : b + 1])
            frames = int(alone.lengths[0])
            for mixed, single in zip([batch.last, *batch.layers], [alone.last, *alone.layers], strict=True):
                torch.testing.assert_close(mixed[b, :frames], single[0], atol=1e-5, rtol=0)


def test_pre_ln_final_norm_and_post_ln_last_layer():
    torch.manual_seed(0)
    for layer_norm_first in (False, True):
        config = dataclasses.replace(
            wav2vec2_large() if layer_norm_first else wav2vec2_base(), dim=32, num_layers=2, num_heads=4, ffn_dim=48
        )
        config.input.frontend_options = {"conv_layers": [(16, 10, 5), (16, 3, 2)], "mode": "layer_norm"}
        config.input.conv_pos_kernel, config.input.conv_pos_groups = 8, 4
        encoder = create_encoder("wav2vec2", config=config).eval()
        x, lengths = dummy_encoder_inputs(config.input, [900])
        with torch.no_grad():
            out = encoder(x, lengths)
        if layer_norm_first:
            torch.testing.assert_close(out.last, encoder.norm(out.layers[-1]))
        else:
            assert torch.equal(out.last, out.layers[-1])


def test_presets_match_the_published_architectures():
    base, large, wavlm = wav2vec2_base(), wav2vec2_large(), wavlm_base()
    assert (base.dim, base.num_layers, base.num_heads, base.ffn_dim, base.layer_norm_first) == (
        768,
        12,
        12,
        3072,
        False,
    )
    assert base.input.frontend_options["mode"] == "group_norm" and not base.relative_position_bias
    assert (large.dim, large.num_layers, large.num_heads, large.ffn_dim, large.layer_norm_first) == (
        1024,
        24,
        16,
        4096,
        True,
    )
    assert large.input.frontend_options["normalize_waveform"] and large.input.frontend_options["conv_bias"]
    assert wavlm.relative_position_bias and (wavlm.num_buckets, wavlm.max_distance) == (320, 800)
    with torch.device("meta"):
        count = sum(p.numel() for p in create_encoder("wav2vec2", "base").parameters())
    assert 94.0e6 < count < 95.5e6  # wav2vec 2.0 / HuBERT base: 94.4 M without the quantizer and heads


def test_heads_must_divide_the_width():
    with pytest.raises(ConfigError, match="not divisible"):
        dataclasses.replace(wav2vec2_base(), num_heads=5)
