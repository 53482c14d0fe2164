"""The shared input embedding and building blocks, checked against independent references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiossl.audio.tokens import PatchConfig
from audiossl.encoders.conformer import _conformer_layer, conformer_tiny, create_conformer
from audiossl.encoders.embed import InputConfig, TokenEmbedding, apply_token_mask, check_keep_indices, gather_kept
from audiossl.nn.attention import TransformerBlock, attention_mask
from audiossl.nn.positional import ConvPositionalEmbedding, sinusoidal_encoding


def test_gather_kept_matches_a_loop():
    tokens = torch.randn(3, 6, 4)
    token_lengths = torch.tensor([6, 2, 4])
    keep = torch.tensor([[5, 0, 3], [1, -1, -1], [0, 2, -1]])
    kept, kept_lengths = gather_kept(tokens, token_lengths, keep)
    assert kept_lengths.tolist() == [3, 1, 2]
    for b in range(3):
        for k in range(3):
            expected = tokens[b, keep[b, k]] if keep[b, k] >= 0 else torch.zeros(4)
            assert torch.equal(kept[b, k], expected)


@pytest.mark.parametrize(
    "keep,message",
    [
        ([[0, -1, 2], [0, 1, -1]], "must come after"),
        ([[0, 1, 2], [0, 3, -1]], "item 1 point past its 3"),
        ([[0, -2, -1], [0, -1, -1]], "only -1"),
    ],
)
def test_bad_keep_indices_are_refused(keep, message):
    with pytest.raises(ValueError, match=message):
        check_keep_indices(torch.tensor(keep), torch.tensor([5, 3]))


def test_apply_token_mask():
    tokens = torch.randn(2, 3, 4)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    embedding = torch.arange(4.0)
    out = apply_token_mask(tokens, mask, embedding)
    assert torch.equal(out[mask], embedding.expand(2, 4))
    assert torch.equal(out[~mask], tokens[~mask])


def test_sinusoidal_encoding_formula():
    positions = torch.tensor([0, 3, 1000])
    code = sinusoidal_encoding(positions, 6)
    for row, p in enumerate(positions.tolist()):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert code[row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-4)
            assert code[row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-4)


def test_conv_positional_embedding_matches_a_plain_conv_and_ignores_padding():
    torch.manual_seed(0)
    module = ConvPositionalEmbedding(8, kernel_size=4, groups=2)
    x = torch.randn(2, 7, 8)
    padding = torch.tensor([[False] * 7, [False] * 3 + [True] * 4])
    out = module(x, padding)
    # Reference for item 1: its 3 frames alone through an explicitly zero-padded grouped conv.
    weight = module.conv.weight  # weight-normalised (D, D / groups, K)
    alone = F.pad(x[1:2, :3].transpose(1, 2), (2, 2))
    reference = F.conv1d(alone, weight, module.conv.bias, groups=2)[..., :3]
    expected = x[1, :3] + F.gelu(reference[0].transpose(0, 1))
    torch.testing.assert_close(out[1, :3], expected, atol=1e-6, rtol=0)
    assert (out[1, 3:] == 0).all()


def test_patch_projection_equals_ast_conv2d_patch_embedding():
    """A linear layer over tokens.patchify patches equals AST's Conv2d(kernel = stride = patch)."""
    torch.manual_seed(0)
    config = InputConfig(kind="patch", num_bins=32, patch=PatchConfig(patch_time=4, patch_freq=8), positions="none")
    embedding = TokenEmbedding(config, 16)
    features = torch.randn(1, 20, 32)  # (B, F, C)
    out = embedding(features, torch.tensor([20]))
    conv = nn.Conv2d(1, 16, kernel_size=(4, 8), stride=(4, 8))
    conv.weight.data = embedding.projection.weight.view(16, 1, 4, 8)
    conv.bias.data = embedding.projection.bias
    grid = conv(features.unsqueeze(1))  # (B, D, Tp, Fp)
    expected = grid.flatten(2).transpose(1, 2)  # (B, Tp * Fp, D), time-major like tokens.patchify
    torch.testing.assert_close(out.tokens, expected, atol=1e-5, rtol=0)


def test_conv_positions_do_not_leak_dropped_tokens():
    """With keep_indices, changing a dropped token's input changes no kept token."""
    torch.manual_seed(0)
    config = InputConfig(kind="frame", num_bins=8, positions="conv", conv_pos_kernel=4, conv_pos_groups=2)
    embedding = TokenEmbedding(config, 8)
    features = torch.randn(1, 10, 8)
    keep = torch.tensor([[0, 2, 3, 7]])
    changed = features.clone()
    changed[0, 1] += 10.0
    changed[0, 5] -= 10.0
    a = embedding(features, torch.tensor([10]), keep_indices=keep).tokens
    b = embedding(changed, torch.tensor([10]), keep_indices=keep).tokens
    assert torch.equal(a, b)


def test_transformer_block_matches_torch_transformer_encoder_layer():
    torch.manual_seed(0)
    dim, heads = 16, 4
    ours = TransformerBlock(dim, heads, mlp_ratio=2.0, norm_eps=1e-6).eval()
    reference = nn.TransformerEncoderLayer(
        dim, heads, dim_feedforward=32, dropout=0.0, activation="gelu", layer_norm_eps=1e-6,
        batch_first=True, norm_first=True,
    ).eval()  # fmt: skip
    reference.self_attn.in_proj_weight.data = ours.attention.qkv.weight.data
    reference.self_attn.in_proj_bias.data = ours.attention.qkv.bias.data
    reference.self_attn.out_proj.weight.data = ours.attention.out.weight.data
    reference.self_attn.out_proj.bias.data = ours.attention.out.bias.data
    reference.linear1.load_state_dict(ours.mlp.fc1.state_dict())
    reference.linear2.load_state_dict(ours.mlp.fc2.state_dict())
    reference.norm1.load_state_dict(ours.attention_norm.state_dict())
    reference.norm2.load_state_dict(ours.mlp_norm.state_dict())
    x = torch.randn(2, 5, dim)
    padding = torch.tensor([[False] * 5, [False] * 2 + [True] * 3])
    with torch.no_grad():
        out = ours(x, padding, attention_mask(padding))
        expected = reference(x, src_key_padding_mask=padding)
    valid = ~padding
    torch.testing.assert_close(out[valid], expected[valid], atol=1e-5, rtol=0)
    assert (out[padding] == 0).all()


def test_conformer_layer_is_torchaudios_forward_without_padding():
    """Driving torchaudio's ConformerLayer step by step gives its own forward when nothing is padded."""
    torch.manual_seed(0)
    config = conformer_tiny()
    config.dim, config.num_layers, config.num_heads, config.ffn_dim, config.conv_kernel = 16, 1, 2, 32, 5
    layer = create_conformer(config).layers[0].eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        ours = _conformer_layer(layer, x, torch.zeros(2, 9, dtype=torch.bool), None)
        theirs = type(layer).forward(layer, x.transpose(0, 1), None).transpose(0, 1)  # torchaudio's own forward
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
