"""BEST-RQ: the quantizer against a numpy nearest-code loop, frozen and saved (never in the optimizer),
the loss against a per-token loop, waveform encoders, learning on a fixed batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from objective_helpers import inputs_for, tiny_encoder

from audiossl.errors import ConfigError
from audiossl.objectives import create_objective
from audiossl.objectives.bestrq import QuantizerConfig, RandomProjectionQuantizer

SPANS = {"kind": "span", "start_prob": 0.2, "span_length": 2, "min_spans": 1}


def objective(family: str = "conformer", kind: str = "frame", seed: int = 1234, **changes):
    torch.manual_seed(0)
    quantizer = {"codebook_size": 16, "codebook_dim": 4, "seed": seed, **changes.pop("quantizer", {})}
    return create_objective("bestrq", tiny_encoder(family, kind), {"mask": SPANS, "quantizer": quantizer, **changes})


def test_codes_are_the_nearest_normalised_code_of_the_projection():
    config = QuantizerConfig(codebook_size=32, codebook_dim=6, num_codebooks=2, seed=5)
    quantizer = RandomProjectionQuantizer(10, config)
    tokens = torch.randn(3, 7, 10, generator=torch.Generator().manual_seed(1))
    codes = quantizer(tokens)  # (3, 7, 2)
    projection, codebooks = quantizer.projection.numpy(), quantizer.codebooks.numpy()
    for b in range(3):
        for s in range(7):
            for g in range(2):
                projected = tokens[b, s].numpy() @ projection[g]
                projected = projected / np.linalg.norm(projected)
                distances = [np.linalg.norm(projected - code / np.linalg.norm(code)) for code in codebooks[g]]
                assert codes[b, s, g] == int(np.argmin(distances))
    # The codebooks are unit vectors; the projection is Xavier-uniform.
    np.testing.assert_allclose(np.linalg.norm(codebooks, axis=-1), 1.0, rtol=1e-5)
    assert np.abs(projection).max() <= np.sqrt(6.0 / 16) + 1e-6
    # Its own generator: the same seed gives the same quantizer whatever the global RNG did.
    torch.manual_seed(99)
    assert torch.equal(RandomProjectionQuantizer(10, config).codebooks, quantizer.codebooks)


def test_quantizer_is_frozen_saved_and_never_in_the_optimizer():
    model = objective()
    parameters = {id(p) for p in model.parameters()}
    assert id(model.quantizer.projection) not in parameters and id(model.quantizer.codebooks) not in parameters
    state = model.state_dict()
    assert {"quantizer.projection", "quantizer.codebooks"} <= set(state)
    before = {k: state[k].clone() for k in ("quantizer.projection", "quantizer.codebooks")}
    features, lengths = inputs_for(model.encoder, [30, 20])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for step in range(3):
        out = model(features, lengths, step=step, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value), key
    # Restored into an objective built with another seed, the saved quantizer is the one used.
    other = objective(seed=7)
    assert not torch.equal(other.quantizer.codebooks, model.quantizer.codebooks)
    other.load_state_dict(model.state_dict())
    codes, _ = other.quantizer.codes(other.encoder, features, lengths)
    torch.testing.assert_close(codes, model.quantizer.codes(model.encoder, features, lengths)[0])


def test_loss_equals_a_per_token_loop():
    model = objective(unmasked_weight=0.5, quantizer={"num_codebooks": 2})
    model.eval()
    features, lengths = inputs_for(model.encoder, [30, 17])
    codes, token_lengths = model.quantizer.codes(model.encoder, features, lengths)
    mask = model.sample_mask(token_lengths, codes.shape[1], torch.Generator().manual_seed(2))
    out = model.loss_with_mask(features, lengths, mask, codes)
    hidden = model.encoder(features, lengths, mask=mask).last
    masked, unmasked = [], []
    for b in range(2):
        for s in range(int(token_lengths[b])):
            logits = model.head(hidden[b, s]).view(2, 16)
            for g in range(2):
                loss = -F.log_softmax(logits[g], dim=-1)[codes[b, s, g]]
                (masked if mask[b, s] else unmasked).append(loss)
    want = torch.stack(masked).mean() + 0.5 * torch.stack(unmasked).mean()
    torch.testing.assert_close(out.total, want)
    assert out.metrics["masked_fraction"] == pytest.approx(len(masked) / 2 / int(token_lengths.sum()))


def test_padding_does_not_change_an_items_codes():
    model = objective()
    features, lengths = inputs_for(model.encoder, [30, 12])
    codes, token_lengths = model.quantizer.codes(model.encoder, features, lengths)
    alone, _ = model.quantizer.codes(model.encoder, features[1:, :12], lengths[1:])
    assert torch.equal(codes[1, : int(token_lengths[1])], alone[0, : int(token_lengths[1])])


def test_waveform_encoders_quantize_raw_windows_at_the_token_hop():
    model = objective("conformer", "waveform")
    assert model.quantizer.hop == 40  # the tiny CNN's stride
    features, lengths = inputs_for(model.encoder, [1600, 1000])
    codes, token_lengths = model.quantizer.codes(model.encoder, features, lengths)
    assert torch.equal(token_lengths, model.encoder.token_lengths(lengths))
    window = features[0, 40 * 3 : 40 * 4]
    window = (window - window.mean()) / (window.std(unbiased=False) + 1e-5)
    assert codes[0, 3, 0] == model.quantizer(window)[0]
    out = model(features, lengths, step=0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.total)


def test_learning_on_a_fixed_batch():
    model = objective("ast", "frame")
    features, lengths = inputs_for(model.encoder, [24, 16])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(10):
        out = model(features, lengths, step=step, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        out.total.backward()
        optimizer.step()
        losses.append(float(out.total.detach()))
    assert np.mean(losses[-3:]) < 0.7 * losses[0]


def test_bad_configs_are_errors():
    with pytest.raises(ConfigError, match="codebook_size"):
        QuantizerConfig(codebook_size=1)
    with pytest.raises(ConfigError, match="normalize"):
        QuantizerConfig(normalize="batch")
    with pytest.raises(ConfigError, match="unmasked_weight"):
        objective(unmasked_weight=-1.0)


def test_objectives_list_names_each_objectives_presets(capsys):
    from audiossl.cli.main import main

    assert main(["objectives", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for objective, preset in [
        ("bestrq", "bestrq-conformer-tiny"),
        ("data2vec", "data2vec-ast-tiny"),
        ("wavlm", "wavlm-conformer-tiny-cpu"),
        ("distill", "distill-conformer-tiny"),
    ]:
        assert preset in lines[objective].split("presets: ")[1], objective
