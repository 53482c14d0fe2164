"""A trained vocoder: which encoder features it reads, and the network that turns them into audio.

Three kinds share one interface, ``(features (B, N, D), lengths) -> (waveforms (B, N x hop), lengths)``:
``hifigan`` (:mod:`audiossl_vc.hifigan`), ``mel-gl`` (a feature-to-mel regressor and
Griffin-Lim, :mod:`audiossl_vc.mel`) and ``neucosvc`` (:mod:`audiossl_vc.neucosvc`), which also
reads per-frame F0 and loudness (``f0=``, ``loudness=``, see :mod:`audiossl_vc.pitch`). The
vocoder also owns the :class:`LayerSelector` it was trained on, so conversion matches exactly
the features the vocoder can render (for ``mix``, with the learned layer weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.models import read_checkpoint
from audiossl.models import resolve_checkpoint as resolve_model_checkpoint
from audiossl_vc.features import LayerSelector, LayerSpec
from audiossl_vc.hifigan import Generator, HifiGanConfig
from audiossl_vc.mel import GriffinLimSynth, MelConfig, MelRegressor
from audiossl_vc.neucosvc import NeuCoSVCConfig, Synthesizer

KINDS = ("hifigan", "mel-gl", "neucosvc")


@dataclass(kw_only=True)
class VocoderSpec:
    """Everything needed to rebuild a vocoder before loading its weights (stored in every checkpoint)."""

    kind: str
    """``hifigan``, ``mel-gl`` or ``neucosvc``."""
    layers: tuple[int, ...]
    """Encoder layers read (indices into ``EncoderOutput.layers``)."""
    layer_mode: str
    """``single``, ``mean`` or ``mix`` (see :class:`~audiossl_vc.features.LayerSpec`)."""
    in_dim: int
    """Feature width D."""
    hop: int
    """Samples per feature frame."""
    sample_rate: int
    """Audio rate (Hz)."""
    mel: MelConfig
    """Log-mel analysis (the mel-GL target, the HiFi-GAN mel loss)."""
    hifigan: HifiGanConfig | None = None
    """Generator sizes (``hifigan`` only)."""
    regressor_channels: int = 128
    """Width of the feature-to-mel regressor (``mel-gl`` only)."""
    regressor_blocks: int = 2
    """Residual blocks of the regressor before upsampling (``mel-gl`` only)."""
    griffin_lim_iters: int = 32
    """Griffin-Lim iterations at synthesis (``mel-gl`` only)."""
    encoder: str = ""
    """The checkpoint whose features the vocoder was trained on (for messages)."""
    neucosvc: NeuCoSVCConfig | None = None
    """Synthesizer sizes (``neucosvc`` only)."""

    @property
    def layer_spec(self) -> LayerSpec:
        return LayerSpec(tuple(self.layers), self.layer_mode)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> VocoderSpec:
        data = dict(data)
        data["layers"] = tuple(data["layers"])
        data["mel"] = MelConfig(**data["mel"])
        if data.get("hifigan") is not None:
            hifigan = dict(data["hifigan"])
            for key, value in hifigan.items():
                if isinstance(value, list):
                    hifigan[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            data["hifigan"] = HifiGanConfig(**hifigan)
        if data.get("neucosvc") is not None:
            data["neucosvc"] = NeuCoSVCConfig(**_tuples(data["neucosvc"]))
        return VocoderSpec(**data)


def _tuples(config: dict[str, Any]) -> dict[str, Any]:
    """Lists read back from a checkpoint as the tuples (of tuples) the config dataclasses hold."""
    return {
        key: tuple(tuple(v) if isinstance(v, list) else v for v in value) if isinstance(value, list) else value
        for key, value in config.items()
    }


class Vocoder(nn.Module):
    """Layer selector + network: stacked layers -> features -> waveforms."""

    def __init__(self, spec: VocoderSpec):
        super().__init__()
        if spec.kind not in KINDS:
            raise ConfigError(f"unknown vocoder kind {spec.kind!r}; known: {', '.join(KINDS)}")
        self.spec = spec
        self.selector = LayerSelector(spec.layer_spec)
        if spec.kind == "hifigan":
            self.net: nn.Module = Generator(spec.in_dim, spec.hop, spec.hifigan or HifiGanConfig.preset("tiny"))
            self.griffin_lim = None
        elif spec.kind == "neucosvc":
            config = spec.neucosvc or NeuCoSVCConfig.preset("tiny")
            self.net = Synthesizer(spec.in_dim, spec.hop, spec.sample_rate, config)
            self.griffin_lim = None
        else:
            self.net = MelRegressor(
                spec.in_dim, spec.mel.n_mels, spec.mel.upsample, spec.regressor_channels, spec.regressor_blocks
            )
            self.griffin_lim = GriffinLimSynth(spec.mel, spec.griffin_lim_iters)

    @property
    def hop(self) -> int:
        return self.spec.hop

    @property
    def needs_pitch(self) -> bool:
        """True if the vocoder renders from F0 and loudness as well as features (``neucosvc``)."""
        return self.spec.kind == "neucosvc"

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor,
        f0: torch.Tensor | None = None, loudness: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Features (B, N, D) + frame lengths (B,) -> waveforms (B, N x hop), zero past lengths x hop.

        ``neucosvc`` also needs ``f0`` (B, N) in Hz (0 = unvoiced) and ``loudness`` (B, N) in dB.
        """
        if features.shape[-1] != self.spec.in_dim:
            raise ConfigError(f"the vocoder reads {self.spec.in_dim}-wide features, got {features.shape[-1]}")
        if self.spec.kind == "hifigan":
            return self.net(features, lengths)
        if self.spec.kind == "neucosvc":
            if f0 is None or loudness is None:
                raise ValueError("a neucosvc vocoder needs f0 and loudness per frame")
            return self.net(features, lengths, f0, loudness)
        mel, mel_lengths = self.net(features, lengths)  # (B, N * r, n_mels)
        out = torch.zeros(features.shape[0], features.shape[1] * self.hop)  # (B, N * hop)
        for row in range(features.shape[0]):
            frames = int(mel_lengths[row])
            if frames:
                out[row, : frames * self.spec.mel.hop_length] = self.griffin_lim(mel[row, :frames].detach())
        return out, lengths * self.hop


def resolve_checkpoint(run: str | Path) -> Path:
    """A vocoder checkpoint path from a run dir (its newest ``ckpt-*.pt``) or a file."""
    return resolve_model_checkpoint(run, what="vocoder checkpoint")


def load_vocoder(run: str | Path) -> Vocoder:
    """The vocoder of a run dir (newest checkpoint) or checkpoint file, in eval mode on the CPU."""
    path = resolve_checkpoint(run)
    state = read_checkpoint(path, keys=("vocoder", "model"))  # one memory-mapped read, no optimizer state
    if "vocoder" not in state:
        raise DataError("not a vocoder checkpoint (audiossl vc train-vocoder writes them)", path)
    vocoder = Vocoder(VocoderSpec.from_dict(state["vocoder"]))
    vocoder.load_state_dict(state["model"])
    return vocoder.eval()
