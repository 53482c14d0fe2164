"""Vocoders: output lengths, padding invariance, discriminators, losses, training reduces the mel loss, Griffin-Lim."""

from __future__ import annotations

import math

import pytest
import torch

from audiossl_vc.hifigan import (
    Discriminators,
    Generator,
    HifiGanConfig,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    upsample_factors,
)
from audiossl_vc.mel import GriffinLimSynth, LogMel, MelConfig, MelRegressor
from audiossl_vc.train import VocoderTrainConfig, VocoderTrainer
from audiossl_vc.vocoder import Vocoder, VocoderSpec


@pytest.mark.parametrize(("hop", "largest"), [(320, 8), (256, 8), (160, 8), (40, 8), (21, 7), (11, 11)])
def test_upsample_factors_multiply_to_the_hop(hop, largest):
    factors = upsample_factors(hop, 8)
    assert math.prod(factors) == hop and max(factors) == largest
    assert factors == sorted(factors, reverse=True)


@pytest.mark.parametrize("hop", [320, 40, 15])
def test_generator_gives_frames_times_hop_and_ignores_padding(hop):
    torch.manual_seed(0)
    generator = Generator(6, hop, HifiGanConfig.preset("tiny")).eval()
    features = torch.randn(2, 9, 6)  # (B, N, D)
    features[1, 5:] = 50.0  # padding that must not reach item 1's valid samples
    with torch.no_grad():
        waves, lengths = generator(features, torch.tensor([9, 5]))
        alone, _ = generator(features[1:, :5], torch.tensor([5]))
    assert waves.shape == (2, 9 * hop) and lengths.tolist() == [9 * hop, 5 * hop]
    assert waves.abs().max() <= 1.0
    torch.testing.assert_close(waves[1, : 5 * hop], alone[0], rtol=1e-5, atol=1e-6)
    assert waves[1, 5 * hop :].abs().sum() == 0


def test_discriminators_score_every_sub_discriminator():
    config = HifiGanConfig.preset("tiny")
    discriminators = Discriminators(config)
    scores, features = discriminators(torch.randn(3, 1001) * 0.1)  # odd length: folding pads it
    assert len(scores) == len(features) == len(config.periods) + config.msd_scales
    for score, maps in zip(scores, features, strict=True):
        assert score.shape[0] == 3 and score.dim() == 2 and torch.isfinite(score).all()
        assert len(maps) >= 4 and maps[-1].flatten(1).shape == score.shape
    period_input = discriminators.periods[1]
    folded = period_input.convs[0].weight.shape  # (C, 1, 5, 1): 2-D kernels over the folded waveform
    assert folded[2:] == (5, 1)


def test_lsgan_and_feature_matching_losses_by_hand():
    real, fake = [torch.ones(2, 3), torch.full((2, 4), 0.5)], [torch.zeros(2, 3), torch.full((2, 4), 0.5)]
    # D: (1-1)^2 + 0^2 for the first, (1-0.5)^2 + 0.5^2 = 0.5 for the second
    assert float(discriminator_loss(real, fake)) == pytest.approx(0.5)
    assert float(generator_adversarial_loss(fake)) == pytest.approx(1.0 + 0.25)
    maps_real = [[torch.zeros(2, 2), torch.ones(1, 3)]]
    maps_fake = [[torch.full((2, 2), 2.0), torch.ones(1, 3)]]
    assert float(feature_matching_loss(maps_real, maps_fake)) == pytest.approx(2.0)


def tiny_spec(kind: str, hop: int = 40, rate: int = 8000) -> VocoderSpec:
    return VocoderSpec(
        kind=kind, layers=(0, 1), layer_mode="mix", in_dim=8, hop=hop, sample_rate=rate,
        mel=MelConfig.for_features(rate, hop, 40), hifigan=HifiGanConfig.preset("tiny"), regressor_channels=32,
    )  # fmt: skip


def fixed_batch(hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    layers = torch.randn(2, 2, 12, 8, generator=generator)  # (K, B, S, D)
    t = torch.arange(12 * hop) / 8000
    waves = torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in (220.0, 330.0)])  # (B, S * hop)
    return layers, waves


@pytest.mark.parametrize("kind", ["hifigan", "mel-gl"])
def test_training_steps_reduce_the_mel_loss_on_a_fixed_batch(kind):
    spec = tiny_spec(kind)
    trainer = VocoderTrainer(spec, VocoderTrainConfig(kind=kind, lr=2e-3, layer="mix"))
    layers, waves = fixed_batch(spec.hop)
    first = [trainer.step(layers, waves)["mel"] for _ in range(6)]
    assert first[-1] < first[0]
    assert trainer.vocoder.selector.mixer.logits.grad is not None  # the learned layer mix trains with the vocoder


def test_mel_grid_divides_the_feature_hop():
    config = MelConfig.for_features(16000, 320)
    assert (config.upsample, config.hop_length, config.n_fft, config.n_mels) == (2, 160, 1024, 80)
    config = MelConfig.for_features(8000, 40, 80)
    assert (config.upsample, config.hop_length, config.n_fft, config.n_mels) == (1, 40, 256, 64)  # n_fft // 4 bands
    regressor = MelRegressor(8, 40, upsample=3, channels=16, blocks=1)
    mel, lengths = regressor(torch.randn(2, 5, 8), torch.tensor([5, 2]))
    assert mel.shape == (2, 15, 40) and lengths.tolist() == [15, 6] and mel[1, 6:].abs().sum() == 0


def test_griffin_lim_reconstructs_a_known_mel_better_than_noise():
    config = MelConfig.for_features(16000, 320)
    log_mel = LogMel(config)
    t = torch.arange(16000) / 16000
    wave = sum(0.1 / h * torch.sin(2 * math.pi * 150 * h * t * (1 + 0.2 * t)) for h in range(1, 12))  # rising voice
    target = log_mel(wave[None])[0]  # (F, n_mels)
    rebuilt = GriffinLimSynth(config, iterations=32)(target)
    assert rebuilt.shape == (target.shape[0] * config.hop_length,)
    noise = torch.randn(rebuilt.shape[0], generator=torch.Generator().manual_seed(0)) * wave.std()
    error = (log_mel(rebuilt[None])[0] - target).abs().mean()
    noise_error = (log_mel(noise[None])[0] - target).abs().mean()
    assert error < 0.5 * noise_error


def test_vocoder_save_and_load_round_trip(tmp_path):
    from audiossl.train.checkpoint import save_checkpoint
    from audiossl_vc.vocoder import load_vocoder

    spec = tiny_spec("hifigan")
    trainer = VocoderTrainer(spec, VocoderTrainConfig(kind="hifigan", layer="mix"))
    trainer.step(*fixed_batch(spec.hop))
    save_checkpoint(trainer.state(1), tmp_path / "ckpt-00000001.pt")
    loaded = load_vocoder(tmp_path)
    assert loaded.spec == spec
    features = torch.randn(1, 6, 8)
    trainer.vocoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(features, torch.tensor([6]))[0], trainer.vocoder(features, torch.tensor([6]))[0]
        )
    assert isinstance(loaded, Vocoder)
