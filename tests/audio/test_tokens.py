"""audiossl.audio.tokens: patch order and content against a slow loop, padding, inverse, frame tokens."""

from __future__ import annotations

import pytest
import torch

from audiossl.audio.tokens import PatchConfig, frame_tokens, patch_counts, patchify, unpatchify
from audiossl.config import from_dict
from audiossl.errors import ConfigError


def slow_patches(item: torch.Tensor, frames: int, config: PatchConfig) -> list[torch.Tensor]:
    """Reference: nested loops over time then frequency, each patch flattened row-major."""
    st, sf = config.time_stride, config.freq_stride
    out = []
    t = 0
    while t * st + config.patch_time <= frames:
        f = 0
        while f * sf + config.patch_freq <= item.shape[1]:
            patch = item[t * st : t * st + config.patch_time, f * sf : f * sf + config.patch_freq]
            out.append(torch.tensor([patch[i, j].item() for i in range(patch.shape[0]) for j in range(patch.shape[1])]))
            f += 1
        t += 1
    return out


CONFIGS = [
    PatchConfig(patch_time=4, patch_freq=3),
    PatchConfig(patch_time=4, patch_freq=3, stride_time=2, stride_freq=2),
    PatchConfig(patch_time=2, patch_freq=5, stride_time=3),
    PatchConfig(patch_time=1, patch_freq=1),
]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: f"{c.patch_time}x{c.patch_freq}/{c.time_stride}x{c.freq_stride}"
)
def test_patchify_matches_nested_loop(config: PatchConfig) -> None:
    generator = torch.Generator().manual_seed(0)
    frame_lengths = torch.tensor([13, 7, 0, 3, 10])
    features = torch.randn(5, 13, 11, generator=generator)
    patches, token_lengths, freq_patches = patchify(features, frame_lengths, config)
    time_patches, freq_count = patch_counts(frame_lengths, 11, config)
    assert freq_count == freq_patches == (11 - config.patch_freq) // config.freq_stride + 1
    assert torch.equal(token_lengths, time_patches * freq_patches)
    assert patches.shape == (5, int(token_lengths.max()), config.patch_time * config.patch_freq)
    for b in range(5):
        expected = slow_patches(features[b], int(frame_lengths[b]), config)
        assert len(expected) == int(token_lengths[b])
        for s, patch in enumerate(expected):  # time-major: s = t * freq_patches + f
            assert torch.equal(patches[b, s], patch)
        assert (patches[b, len(expected) :] == 0).all()


def test_patch_counts_formula() -> None:
    config = PatchConfig(patch_time=16, patch_freq=16, stride_time=10, stride_freq=10)
    time, freq = patch_counts(torch.tensor([0, 15, 16, 25, 26, 1000]), 128, config)
    assert time.tolist() == [0, 0, 1, 1, 2, (1000 - 16) // 10 + 1]
    assert freq == (128 - 16) // 10 + 1
    assert patch_counts(torch.tensor([5]), 8, PatchConfig())[1] < 1  # fewer bins than a patch: caller checks


def test_patchify_is_padding_invariant() -> None:
    config = PatchConfig(patch_time=4, patch_freq=4, stride_time=3)
    generator = torch.Generator().manual_seed(1)
    items = [torch.randn(n, 12, generator=generator) for n in (20, 9, 4)]
    batch = torch.full((3, 25, 12), float("nan"))  # padding content must not matter, even NaN
    for b, item in enumerate(items):
        batch[b, : item.shape[0]] = item
    lengths = torch.tensor([item.shape[0] for item in items])
    patches, token_lengths, _ = patchify(batch, lengths, config)
    assert not patches.isnan().any()
    for b, item in enumerate(items):
        alone, alone_lengths, _ = patchify(item.unsqueeze(0), lengths[b : b + 1], config)
        assert int(alone_lengths[0]) == int(token_lengths[b])
        assert torch.equal(patches[b, : token_lengths[b]], alone[0, : token_lengths[b]])


def test_unpatchify_inverts_patchify_on_covered_region() -> None:
    config = PatchConfig(patch_time=4, patch_freq=3)
    features = torch.randn(3, 17, 10)
    lengths = torch.tensor([17, 8, 5])
    patches, _, _ = patchify(features, lengths, config)
    restored = unpatchify(patches, lengths, 10, config)
    assert restored.shape == (3, 17, 10)
    for b, n in enumerate(lengths.tolist()):
        covered = (n // 4) * 4
        assert torch.equal(restored[b, :covered, :9], features[b, :covered, :9])
        assert (restored[b, covered:] == 0).all() and (restored[b, :, 9:] == 0).all()
    with pytest.raises(ConfigError):
        unpatchify(patches, lengths, 10, PatchConfig(patch_time=4, patch_freq=3, stride_time=2))


def test_frame_tokens_stack_consecutive_frames() -> None:
    features = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)
    tokens, token_lengths = frame_tokens(features, torch.tensor([7, 5]), stack=2)
    assert tokens.shape == (2, 3, 6)
    assert token_lengths.tolist() == [3, 2]
    assert torch.equal(tokens[0, 1], torch.cat([features[0, 2], features[0, 3]]))
    assert (tokens[1, 2] == 0).all()  # frame 4 of item 1 is valid but its group is incomplete
    same, lengths = frame_tokens(features, torch.tensor([7, 5]))
    assert torch.equal(same[0], features[0]) and lengths.tolist() == [7, 5]


def test_patch_config_from_yaml_mapping_and_errors() -> None:
    config = from_dict(PatchConfig, {"patch_time": 8, "stride_freq": 4})
    assert (config.time_stride, config.freq_stride) == (8, 4)
    with pytest.raises(ConfigError):
        from_dict(PatchConfig, {"patch_size": 8})
    with pytest.raises(ConfigError):
        PatchConfig(patch_time=0)
    with pytest.raises(ConfigError):
        patchify(torch.zeros(1, 20, 8), torch.tensor([20]), PatchConfig())
