"""The conv positional embedding under CPU bf16 autocast stays close to fp32, whatever the group width.

oneDNN's bf16 grouped conv1d on AMX CPUs (torch 2.9.1) returned wrong values for 8 channels a
group; the embedding runs its convolution in fp32 under CPU autocast. On CPUs without that bug
this test passes with or without the guard.
"""

from __future__ import annotations

import pytest
import torch

from audiossl.nn.positional import ConvPositionalEmbedding


@pytest.mark.parametrize(("dim", "groups", "kernel"), [(32, 4, 8), (64, 8, 8), (32, 2, 8), (64, 16, 16)])
def test_bf16_autocast_matches_fp32(dim, groups, kernel):
    torch.manual_seed(0)
    embedding = ConvPositionalEmbedding(dim, kernel, groups).eval()
    x = torch.randn(2, 50, dim)
    padding = torch.zeros(2, 50, dtype=torch.bool)
    padding[1, 30:] = True
    with torch.no_grad():
        reference = embedding(x, padding)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = embedding(x, padding).float()
    # A slow reference for the positional branch: the same conv, item by item, in float64.
    conv = embedding.conv
    with torch.no_grad():
        for item in range(2):
            valid = int((~padding[item]).sum())
            alone = torch.nn.functional.conv1d(
                x[item, :valid].double().T.unsqueeze(0),
                conv.weight.double(),
                conv.bias.double(),
                padding=kernel // 2,
                groups=groups,
            )[0, :, :valid].T
            expected = x[item, :valid].double() + torch.nn.functional.gelu(alone)
            torch.testing.assert_close(reference[item, :valid].double(), expected, atol=1e-5, rtol=1e-5)
    scale = reference.abs().max()
    assert float((mixed - reference).abs().max() / scale) < 0.02
    assert bool((mixed[1, 30:] == 0).all())
