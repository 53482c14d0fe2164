"""The vocoder's models, optimisers and loss: what one step of vocoder training computes.

:class:`VocoderTrainer` holds the vocoder, the mel front-end and (HiFi-GAN) the discriminators
with their optimiser; :meth:`VocoderTrainer.loss` is the generator's loss of one batch (after a
discriminator step), which the training engine back-propagates (:mod:`audiossl_vc.train`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from audiossl.config import to_dict
from audiossl.engine import parameter_groups
from audiossl.fileio import CHECKPOINT_FORMAT
from audiossl.nn.outputs import LossOutput
from audiossl_vc.hifigan import Discriminators, discriminator_loss, feature_matching_loss, generator_adversarial_loss
from audiossl_vc.mel import LogMel
from audiossl_vc.neucosvc import MultiResolutionSTFTLoss
from audiossl_vc.vocoder import Vocoder, VocoderSpec

if TYPE_CHECKING:
    from audiossl_vc.train import VocoderTrainConfig

#: AdamW weight decay of weight matrices (torch's default, which vocoder training has always used);
#: biases, norms and layer-mix logits are exempt by the engine's shared rule.
WEIGHT_DECAY = 0.01


class GeneratorStep(nn.Module):
    """The trained half of a vocoder in one call (layer selector + network), so DDP sees all of it."""

    def __init__(self, vocoder: Vocoder):
        super().__init__()
        self.vocoder = vocoder

    def forward(
        self, layers: torch.Tensor, f0: torch.Tensor | None = None, loudness: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Stacked layers (K, B, S, D) [+ F0, loudness (B, S)] -> log-mels (mel-gl) or waveforms (hifigan, neucosvc)."""
        features = self.vocoder.selector(layers)  # (B, S, D)
        lengths = torch.full((features.shape[0],), features.shape[1], device=features.device)
        if self.vocoder.needs_pitch:
            return self.vocoder.net(features, lengths, f0, loudness)[0]
        return self.vocoder.net(features, lengths)[0]


class VocoderTrainer:
    """Models, optimisers and the loss of one vocoder run (the engine's :class:`VocoderUnit` steps it).

    The generator's optimiser follows the engine's rules (AdamW, the shared no-decay set); the
    discriminators (hifigan, neucosvc) are updated inside :meth:`loss` with their own optimiser, before the
    generator's loss is computed against them, as in Kong et al. (2020).
    """

    def __init__(self, spec: VocoderSpec, config: VocoderTrainConfig, device: torch.device | str | None = None):
        torch.manual_seed(config.seed)
        self.spec = spec
        self.config = config
        self.device = torch.device(device if device is not None else config.device)
        self.vocoder = Vocoder(spec).to(self.device)
        self.generator = GeneratorStep(self.vocoder)
        self.log_mel = LogMel(spec.mel).to(self.device)
        self.lr = config.lr if config.lr is not None else (1e-3 if spec.kind == "mel-gl" else 2e-4)
        self.betas = (0.9, 0.99) if spec.kind == "mel-gl" else (0.8, 0.99)
        self.optimizer = torch.optim.AdamW(self.parameter_groups(), lr=self.lr, betas=self.betas)
        disc_config = spec.neucosvc.discriminators() if spec.neucosvc is not None else spec.hifigan
        self.discriminators = Discriminators(disc_config).to(self.device) if spec.kind != "mel-gl" else None
        self.stft_loss = (
            MultiResolutionSTFTLoss(spec.neucosvc.stft_resolutions, spec.sample_rate).to(self.device)
            if spec.neucosvc is not None
            else None
        )
        self.disc_optimizer = (
            torch.optim.AdamW(parameter_groups(self.discriminators, WEIGHT_DECAY), lr=self.lr, betas=self.betas)
            if self.discriminators
            else None
        )
        self.run_discriminators: nn.Module | None = self.discriminators  # DDP-wrapped under torchrun

    def parameter_groups(self) -> list[dict]:
        """The generator's AdamW groups (layer selector + network) with the shared no-decay rule."""
        return parameter_groups(self.generator, WEIGHT_DECAY)

    def loss(
        self, generator: nn.Module, layers: torch.Tensor, waves: torch.Tensor,
        f0: torch.Tensor | None = None, loudness: torch.Tensor | None = None,
    ) -> LossOutput:  # fmt: skip
        """The generator's loss on stacked layers (K, B, S, D) and waveforms (B, S x hop) (GANs: after a D step);
        ``neucosvc`` also reads F0 and loudness (B, S)."""
        layers, waves = layers.to(self.device), waves.to(self.device)
        if self.stft_loss is not None:
            return self._neucosvc_loss(generator, layers, waves, f0.to(self.device), loudness.to(self.device))
        target_mel = self.log_mel(waves)  # (B, S * r, n_mels)
        if self.discriminators is None:
            mel = generator(layers)  # (B, S * r, n_mels)
            loss = (mel.float() - target_mel).abs().mean()
            return LossOutput(total=loss, parts={"mel": loss.detach()})
        fake = generator(layers).float()  # (B, S * hop)
        real_scores, _ = self.run_discriminators(waves)
        fake_scores, _ = self.run_discriminators(fake.detach())
        disc_loss = discriminator_loss(real_scores, fake_scores)
        self.disc_optimizer.zero_grad()
        disc_loss.backward()
        self.disc_optimizer.step()
        _, real_maps = self.run_discriminators(waves)
        fake_scores, fake_maps = self.run_discriminators(fake)
        mel_loss = (self.log_mel(fake) - target_mel).abs().mean()
        adversarial = generator_adversarial_loss(fake_scores)
        matching = feature_matching_loss(real_maps, fake_maps)
        loss = adversarial + self.config.feature_matching_weight * matching + self.config.mel_weight * mel_loss
        parts = {"mel": mel_loss, "adversarial": adversarial, "feature_matching": matching, "discriminator": disc_loss}
        return LossOutput(total=loss, parts={name: value.detach() for name, value in parts.items()})

    def _neucosvc_loss(
        self, generator: nn.Module, layers: torch.Tensor, waves: torch.Tensor, f0: torch.Tensor, loudness: torch.Tensor
    ) -> LossOutput:
        """NeuCoSVC: a discriminator step, then adversarial + feature matching + multi-resolution STFT."""
        fake = generator(layers, f0, loudness).float()  # (B, S * hop)
        real_scores, _ = self.run_discriminators(waves)
        fake_scores, _ = self.run_discriminators(fake.detach())
        disc_loss = discriminator_loss(real_scores, fake_scores)
        self.disc_optimizer.zero_grad()
        disc_loss.backward()
        self.disc_optimizer.step()
        _, real_maps = self.run_discriminators(waves)
        fake_scores, fake_maps = self.run_discriminators(fake)
        stft = self.stft_loss(fake, waves)
        adversarial = generator_adversarial_loss(fake_scores)
        matching = feature_matching_loss(real_maps, fake_maps)
        loss = adversarial + self.config.feature_matching_weight * matching + self.config.stft_weight * stft
        with torch.no_grad():
            mel = (self.log_mel(fake) - self.log_mel(waves)).abs().mean()  # for comparison with hifigan's logs
        parts = {"stft": stft, "mel": mel, "adversarial": adversarial, "feature_matching": matching,
                 "discriminator": disc_loss}  # fmt: skip
        return LossOutput(total=loss, parts={name: value.detach() for name, value in parts.items()})

    def step(self, layers: torch.Tensor, waves: torch.Tensor, *pitch: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a batch outside the engine (tests, notebooks): loss and parts as floats."""
        self.vocoder.train()
        out = self.loss(self.generator, layers, waves, *pitch)
        self.optimizer.zero_grad()
        out.total.backward()
        self.optimizer.step()
        return {"loss": out.total.item(), **{name: float(value) for name, value in out.parts.items()}}

    def state(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> dict:
        """A loadable checkpoint of the vocoder (``optimizer``: the generator's, default this trainer's)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            **self.state_entries(),
            "optimizer": (optimizer or self.optimizer).state_dict(),
        }

    def state_entries(self) -> dict:
        """The vocoder's entries of a checkpoint besides the generator optimiser's (the engine adds that)."""
        return {
            "vocoder": self.spec.to_dict(),
            "model": self.vocoder.state_dict(),
            "discriminators": None if self.discriminators is None else self.discriminators.state_dict(),
            "disc_optimizer": None if self.disc_optimizer is None else self.disc_optimizer.state_dict(),
            "train_config": to_dict(self.config),
        }

    def load(self, state: dict, optimizer: torch.optim.Optimizer | None = None) -> int:
        self.vocoder.load_state_dict(state["model"])
        (optimizer or self.optimizer).load_state_dict(state["optimizer"])
        if self.discriminators is not None:
            self.discriminators.load_state_dict(state["discriminators"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        return int(state["step"])
