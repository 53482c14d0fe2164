"""WavLM-style denoising masked prediction: utterance mixing (never itself, primary dominant, padding
untouched, the added segment equals a loop's), targets from the clean primary, the loss vs a loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from objective_helpers import tiny_encoder

from audiossl.audio.frontends import frontend_config
from audiossl.data.dataset import Batch
from audiossl.errors import ConfigError
from audiossl.objectives import create_objective
from audiossl.objectives.wavlm import MixConfig, draw_mix, mix_utterances
from audiossl.train.config import DataConfig
from audiossl.train.inputs import InputPipeline

RATE = 16000
SPANS = {"kind": "span", "start_prob": 0.2, "span_length": 2, "min_spans": 1}
PADDING = 3.5  # a value no mixing may write over


def waves(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = torch.full((len(lengths), max(lengths)), PADDING)
    for row, length in enumerate(lengths):
        t = torch.arange(length) / RATE
        tone = torch.sin(2 * math.pi * (110 + 70 * row) * t) * (0.2 + 0.3 * row)
        out[row, :length] = tone + 0.05 * torch.randn(length, generator=generator)
    return out, torch.tensor(lengths)


def test_an_utterance_is_never_mixed_with_itself():
    config = MixConfig(prob=1.0)
    for batch in range(2, 7):
        for seed in range(40):
            lengths = torch.randint(400, 1600, (batch,), generator=torch.Generator().manual_seed(seed))
            plan = draw_mix(lengths, config, torch.Generator().manual_seed(seed))
            mixed = plan.partner >= 0
            assert mixed.all()
            assert not (plan.partner == torch.arange(batch)).any()
    # A batch of one has no other utterance: nothing is mixed.
    assert (draw_mix(torch.tensor([800]), config, torch.Generator().manual_seed(0)).partner == -1).all()


def test_mixing_adds_a_scaled_segment_of_the_partner_inside_the_primary_only():
    batch, lengths = waves([1600, 1000, 1300, 700])
    plan = draw_mix(lengths, MixConfig(prob=1.0), torch.Generator().manual_seed(3))
    mixed = mix_utterances(batch, lengths, plan)
    assert torch.equal(batch, waves([1600, 1000, 1300, 700])[0])  # the input is left as it was
    for row in range(4):
        n = int(lengths[row])
        assert torch.equal(mixed[row, n:], batch[row, n:]), "padding was touched"
        partner, size = int(plan.partner[row]), int(plan.length[row])
        start, source = int(plan.target_start[row]), int(plan.source_start[row])
        assert 1 <= size <= 0.5 * n and start + size <= n and source + size <= int(lengths[partner])
        # Reference by a slow loop: primary power over its utterance / segment power = 10^(ratio/10).
        primary = [float(v) ** 2 for v in batch[row, :n]]
        segment = [float(v) for v in batch[partner, source : source + size]]
        gain = math.sqrt(
            (sum(primary) / n) / (sum(v * v for v in segment) / size * 10 ** (float(plan.ratio_db[row]) / 10))
        )
        expected = batch[row].clone()
        for i, value in enumerate(segment):
            expected[start + i] += gain * value
        torch.testing.assert_close(mixed[row], expected, rtol=1e-5, atol=1e-6)


def test_the_primary_stays_dominant_in_energy():
    config = MixConfig(prob=1.0, max_fraction=0.5, ratio_db=(0.0, 5.0))
    for seed in range(30):
        lengths = torch.randint(300, 2000, (5,), generator=torch.Generator().manual_seed(100 + seed))
        batch, _ = waves(lengths.tolist(), seed)
        plan = draw_mix(lengths, config, torch.Generator().manual_seed(seed))
        mixed = mix_utterances(batch, lengths, plan)
        for row in range(5):
            n = int(lengths[row])
            clean = batch[row, :n].double().numpy()
            added = mixed[row, :n].double().numpy() - clean
            assert np.sum(added**2) < np.sum(clean**2)
            assert 0.0 <= float(plan.ratio_db[row]) <= 5.0


def test_settings_that_could_drown_the_primary_are_refused():
    with pytest.raises(ConfigError, match="dominant"):
        MixConfig(max_fraction=0.5, ratio_db=(-5.0, 5.0))
    with pytest.raises(ConfigError, match="max_fraction"):
        MixConfig(max_fraction=0.0)
    MixConfig(max_fraction=0.2, ratio_db=(-5.0, 5.0))  # 0.2 * 10^0.5 < 1: allowed


def pipeline() -> InputPipeline:
    config = DataConfig(sample_rate=RATE, frontend="fbank", frontend_config={"num_mel_bins": 32}, normalize="utterance")
    return InputPipeline(config, frontend_config("fbank", {"num_mel_bins": 32, "sample_rate": RATE}))


def objective(**changes):
    torch.manual_seed(0)
    settings = {"mask": SPANS, "quantizer": {"codebook_size": 16}, "code_dim": 8, "mix": {"prob": 1.0}, **changes}
    return create_objective("wavlm", tiny_encoder("conformer", "frame"), settings)


def test_targets_come_from_the_clean_primary_and_inputs_are_mixed():
    model = objective(noise={"noise_prob": 1.0, "reverb_prob": 0.0, "noise_kinds": ["white"], "snr_db": [10, 10]})
    model.train()
    inputs = pipeline()
    audio, lengths = waves([6400, 4000, 5200])
    audio[:, :] = audio.masked_fill(torch.arange(audio.shape[1]) >= lengths.unsqueeze(1), 0.0)
    batch = Batch(["a", "b", "c"], audio, lengths)
    prepared = model.prepare_batch(batch, inputs, torch.Generator().manual_seed(0))
    clean_features, feature_lengths = inputs(audio, lengths)
    codes, token_lengths = model.quantizer.codes(model.encoder, clean_features, feature_lengths)
    want = codes[..., 0].masked_fill(torch.arange(codes.shape[1]) >= token_lengths.unsqueeze(1), -100)
    assert torch.equal(prepared.targets, want)
    assert not torch.allclose(prepared.features, clean_features)
    # Validation (eval mode) sees the clean input.
    model.eval()
    assert torch.equal(model.prepare_batch(batch, inputs, None).features, clean_features)


def test_loss_equals_a_per_token_loop():
    model = objective()
    model.eval()
    inputs = pipeline()
    audio, lengths = waves([5000, 3500])
    audio = audio.masked_fill(torch.arange(audio.shape[1]) >= lengths.unsqueeze(1), 0.0)
    prepared = model.prepare_batch(Batch(["a", "b"], audio, lengths), inputs)
    token_lengths = model.encoder.token_lengths(prepared.lengths)
    mask = model.sample_mask(token_lengths, int(token_lengths.max()), torch.Generator().manual_seed(1))
    out = model.loss_with_mask(prepared.features, prepared.lengths, mask, prepared.targets)
    hidden = model.encoder(prepared.features, prepared.lengths, mask=mask).last
    losses = []
    for b in range(2):
        for s in range(int(token_lengths[b])):
            if mask[b, s]:
                projected = F.normalize(model.projection(hidden[b, s]), dim=0)
                logits = torch.stack([projected @ F.normalize(c, dim=0) for c in model.codewords]) / 0.1
                losses.append(-F.log_softmax(logits, dim=0)[prepared.targets[b, s]])
    torch.testing.assert_close(out.total, torch.stack(losses).mean())


def test_labels_mode_reads_hubert_frame_targets_of_the_clean_utterance():
    quantized = objective()
    assert quantized.target_specs() == {} and quantized.quantizer is not None
    model = objective(labels="labels-dir", num_clusters=8)
    assert model.quantizer is None and set(model.target_specs()) == {"frames"}
    model.train()
    audio, lengths = waves([5000, 3500])
    audio = audio.masked_fill(torch.arange(audio.shape[1]) >= lengths.unsqueeze(1), 0.0)
    frames = torch.randint(0, 8, (2, 15), generator=torch.Generator().manual_seed(0))
    batch = Batch(["a", "b"], audio, lengths, targets={"frames": frames})
    prepared = model.prepare_batch(batch, pipeline(), torch.Generator().manual_seed(0))
    assert torch.equal(prepared.targets, frames)
    with pytest.raises(ConfigError, match="frames"):
        model.prepare_batch(Batch(["a", "b"], audio, lengths), pipeline())
