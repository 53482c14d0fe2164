"""Bidirectional Mamba: padding never leaks in either direction, both directions are live, cls placement."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from audiossl.config import from_dict
from audiossl.encoders import create_encoder
from audiossl.encoders.mamba import (
    BiMambaMixer,
    MambaConfig,
    _insert_at,
    _move_to_front,
    mamba_base,
    mamba_small,
    mamba_tiny,
)
from audiossl.nn.masking import lengths_to_padding_mask
from audiossl.testing.configs import dummy_encoder_inputs, tiny_encoder_config

LENGTHS = [45, 3, 17]  # very different lengths, none a multiple of the chunk size


def mixer_config(**overrides) -> MambaConfig:
    return dataclasses.replace(MambaConfig(dim=16, num_layers=1, d_state=4, chunk_size=8), **overrides)


def build_mixer(seed: int = 0, **overrides) -> BiMambaMixer:
    torch.manual_seed(seed)
    return BiMambaMixer(mixer_config(**overrides)).eval()


def padded_tokens(lengths: list[int], dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random tokens (B, S, D) with random (non-zero) padding, and their lengths."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths), dim, generator=generator), torch.tensor(lengths)


def mix(mixer: BiMambaMixer, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return mixer(x, lengths, lengths_to_padding_mask(lengths, x.shape[1]))


@pytest.mark.parametrize("method", ["parallel", "sequential", "native"])
def test_mixer_padded_batch_equals_each_item_alone(method):
    mixer = build_mixer(scan_method=method)
    x, lengths = padded_tokens(LENGTHS)
    with torch.no_grad():
        batch_out = mix(mixer, x, lengths)
        for b, n in enumerate(LENGTHS):
            item_out = mix(mixer, x[b : b + 1, :n], lengths[b : b + 1])
            torch.testing.assert_close(batch_out[b, :n], item_out[0], atol=1e-5, rtol=0)


def test_padding_content_changes_nothing():
    mixer = build_mixer()
    x, lengths = padded_tokens(LENGTHS)
    padding = lengths_to_padding_mask(lengths, x.shape[1]).unsqueeze(-1)  # (B, S, 1)
    other = torch.where(padding, 100 * torch.randn_like(x), x)
    with torch.no_grad():
        out, out_other = mix(mixer, x, lengths), mix(mixer, other, lengths)
    valid = ~padding.squeeze(-1)
    torch.testing.assert_close(out[valid], out_other[valid], atol=1e-6, rtol=0)


def test_both_directions_carry_information():
    """Changing the last valid token changes the first output (right-to-left path), and vice versa."""
    mixer = build_mixer()
    x, lengths = padded_tokens(LENGTHS)
    b, n = 0, LENGTHS[0]
    with torch.no_grad():
        out = mix(mixer, x, lengths)
        last_changed = x.clone()
        last_changed[b, n - 1] += 1.0
        out_last = mix(mixer, last_changed, lengths)
        first_changed = x.clone()
        first_changed[b, 0] += 1.0
        out_first = mix(mixer, first_changed, lengths)
    assert (out_last[b, 0] - out[b, 0]).abs().max() > 1e-6  # information flowed right to left
    assert (out_first[b, n - 1] - out[b, n - 1]).abs().max() > 1e-6  # and left to right
    assert torch.equal(out_last[1:], out[1:])  # other items untouched


def test_directions_have_their_own_parameters_and_share_projections():
    mixer = build_mixer()
    names = {name for name, _ in mixer.named_parameters()}
    for own in ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D"):
        assert f"forward_ssm.{own}" in names and f"backward_ssm.{own}" in names
    assert {"in_proj.weight", "out_proj.weight"} <= names
    # Initialised as Mamba: A = -(1..N) per channel, D = 1, softplus(dt bias) in [dt_min, dt_max].
    ssm = mixer.backward_ssm
    torch.testing.assert_close(-torch.exp(ssm.A_log[0]), -torch.arange(1.0, 5.0))
    assert torch.equal(ssm.D, torch.ones_like(ssm.D))
    dt = torch.nn.functional.softplus(ssm.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6


def test_insert_and_move_to_front_put_cls_first():
    x, lengths = padded_tokens([5, 2, 1], dim=3)
    cls = torch.full((3,), 7.0)
    position = torch.div(lengths, 2, rounding_mode="floor")
    inserted = _insert_at(x, position, cls)  # (B, S + 1, D)
    for b, n in enumerate(lengths.tolist()):
        m = n // 2
        expected = torch.cat([x[b, :m], cls[None], x[b, m:]])
        torch.testing.assert_close(inserted[b, : n + 1], expected[: n + 1])
    moved = _move_to_front(inserted, position)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(moved[b, : n + 1], torch.cat([cls[None], x[b, :n]]))


def tiny_encoder(cls_token: str, seed: int = 0):
    torch.manual_seed(seed)
    config = dataclasses.replace(tiny_encoder_config("mamba", "frame"), cls_token=cls_token)
    return create_encoder("mamba", config=config).eval()


@pytest.mark.parametrize("cls_token", ["none", "start", "middle"])
def test_encoder_padded_batch_equals_each_item_alone(cls_token):
    encoder = tiny_encoder(cls_token)
    features, lengths = dummy_encoder_inputs(encoder.config.input, [90, 6, 35], seed=0)
    with torch.no_grad():
        out = encoder(features, lengths)
        assert out.num_prefix_tokens == (0 if cls_token == "none" else 1)
        for b in range(len(lengths)):
            n_frames = int(lengths[b])
            item = encoder(features[b : b + 1, :n_frames], lengths[b : b + 1])
            n = int(out.lengths[b])
            assert int(item.lengths[0]) == n
            torch.testing.assert_close(out.last[b, :n], item.last[0], atol=1e-5, rtol=0)
            for layer, item_layer in zip(out.layers, item.layers, strict=True):
                torch.testing.assert_close(layer[b, :n], item_layer[0], atol=1e-5, rtol=0)


def test_middle_cls_token_hears_both_ends():
    """With the cls token in the middle, both halves reach it; outputs still put it first."""
    encoder = tiny_encoder("middle")
    features, lengths = dummy_encoder_inputs(encoder.config.input, [40], seed=1)
    with torch.no_grad():
        out = encoder(features, lengths)
        for frame in (0, 39):
            changed = features.clone()
            changed[0, frame] += 3.0
            assert (encoder(changed, lengths).prefix() - out.prefix()).abs().max() > 1e-6


def test_scan_methods_agree_in_the_encoder():
    encoder = tiny_encoder("start")
    features, lengths = dummy_encoder_inputs(encoder.config.input, [60, 21], seed=2)
    with torch.no_grad():
        out = encoder(features, lengths)
        for module in encoder.modules():
            if hasattr(module, "scan_method"):
                module.scan_method = "parallel"
        out_parallel = encoder(features, lengths)
    torch.testing.assert_close(out.last, out_parallel.last, atol=1e-5, rtol=0)


def test_config_from_dict_and_presets():
    config = from_dict(MambaConfig, {"dim": 64, "dt_rank": 8, "cls_token": "middle"})
    assert config.dt_rank == 8 and config.cls_token == "middle"
    assert from_dict(MambaConfig, {"dt_rank": "auto"}).dt_rank == "auto"
    sizes = {}
    for name, preset in {"tiny": mamba_tiny, "small": mamba_small, "base": mamba_base}.items():
        config = preset()
        assert config.num_layers == 24 and config.d_state == 16 and config.expand == 2
        with torch.device("meta"):
            sizes[name] = sum(p.numel() for p in create_encoder("mamba", config=config).parameters())
    assert (mamba_tiny().dim, mamba_small().dim, mamba_base().dim) == (192, 384, 768)
    # Comparable to SSAST (about 6 M, 23 M, 89 M) and Vim (7 M, 26 M, 98 M).
    assert 6.0e6 < sizes["tiny"] < 8.0e6
    assert 23e6 < sizes["small"] < 27e6
    assert 90e6 < sizes["base"] < 100e6


def _grads_of(encoder, features, lengths):
    out = encoder(features, lengths)
    weights = torch.linspace(-1, 1, out.last.shape[-1])
    loss = (out.last * weights).square().sum() + sum((layer * weights).sum() for layer in out.layers)
    names = [name for name, p in encoder.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(
        loss, [dict(encoder.named_parameters())[n] for n in names] + [features], allow_unused=True
    )
    return out.last.detach(), {n: g for n, g in zip([*names, "features"], grads, strict=True) if g is not None}


@pytest.mark.parametrize("method", ["native", "sequential"])
def test_recompute_and_compiled_scan_give_todays_outputs_and_gradients(method):
    """Today's path (PyTorch scan, every intermediate saved) against recompute-in-backward with ``method``."""
    results = {}
    for key, (recompute, scan_method) in {"today": (False, "sequential"), "new": (True, method)}.items():
        torch.manual_seed(0)
        config = dataclasses.replace(
            tiny_encoder_config("mamba", "frame"), recompute=recompute, scan_method=scan_method, drop_path=0.2
        )
        encoder = create_encoder("mamba", config=config).train()
        features, lengths = dummy_encoder_inputs(encoder.config.input, [50, 23], seed=4)
        features.requires_grad_(True)
        torch.manual_seed(1)  # the same drop-path draws
        results[key] = _grads_of(encoder, features, lengths)
    (out, grads), (out_new, grads_new) = results["today"], results["new"]
    torch.testing.assert_close(out_new, out, atol=1e-5, rtol=0)
    assert grads.keys() == grads_new.keys() and len(grads) > 20
    for name, grad in grads.items():
        torch.testing.assert_close(grads_new[name], grad, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def _saved_activation_bytes(encoder, features, lengths) -> int:
    """Bytes of the distinct storages autograd saves for backward during a forward, parameters excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in encoder.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        encoder(features, lengths)
    return sum(storages.values())


def test_a_16k_token_step_saves_about_one_activation_per_block():
    """Structural memory budget of BiMamba-tiny's training step at 16k tokens (bytes, not time).

    The unit is one fp32 (tokens, dim) activation per block: 16384 x 192 x 24 x 4 B = 302 MB.
    With recompute, backward needs each block's input (the previous block's output: 1 unit, and
    the encoder returns those anyway), the embedding's and the final norm's few (tokens, dim)
    tensors (a few / 24 of a unit) and the boolean padding masks. Budget: 2 units. Saving every
    intermediate (in_proj, conv, silu, x_proj, dt, the scan's inputs and outputs for two
    directions of inner width 384, the gate; about 40 units) would be 20x over it, which the
    probe at 512 tokens below checks it can see.
    """
    config = mamba_tiny()  # 16 x 16 patches of 128-bin frames: 8 tokens per 16 frames
    torch.manual_seed(0)
    encoder = create_encoder("mamba", config=config).train()
    unit_per_token = config.dim * config.num_layers * 4
    frames = 2 * 16384  # 8 patches per 16 frames: 16384 tokens
    features = torch.randn(1, frames, config.input.num_bins)
    lengths = torch.tensor([frames])
    tokens = int(encoder.token_lengths(lengths)[0])
    assert tokens >= 16384
    assert _saved_activation_bytes(encoder, features, lengths) < 2 * unit_per_token * tokens

    # The probe is not blind: without recompute, 512 tokens save more than 10 units.
    encoder_saving_all = create_encoder("mamba", config=dataclasses.replace(config, recompute=False)).train()
    short = features[:, :1024]
    saved = _saved_activation_bytes(encoder_saving_all, short, torch.tensor([1024]))
    assert saved > 10 * unit_per_token * int(encoder.token_lengths(torch.tensor([1024]))[0])
