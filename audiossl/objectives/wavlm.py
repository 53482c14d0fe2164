"""``wavlm``: WavLM-style denoising masked prediction (Chen et al. 2022): HuBERT's targets, mixed inputs.

The encoder sees a corrupted utterance and predicts, at masked tokens, the targets of the
*clean* utterance, so it has to pick the primary speaker out of an overlap and the noise:

* **utterance mixing** (:func:`mix_utterances`, on waveforms before the front-end, training only):
  with probability ``mix.prob`` an utterance (the primary) gets a segment of another utterance
  of the batch, never itself: a random window of the other utterance, of at most
  ``mix.max_fraction`` of the primary's length (and at most the other's length), added at a
  random place inside the primary's valid samples at a primary-to-interferer energy ratio drawn
  uniformly in ``mix.ratio_db`` (the primary's mean power over its utterance against the
  segment's mean power). The config guarantees that the primary stays dominant:
  ``max_fraction * 10 ** (-min(ratio_db) / 10) < 1``, so the added energy is always below the
  primary's own. Padding is never written.
* **noise** (optional, ``noise``): additive generated or recorded noise (and reverberation) at a
  random SNR, :mod:`audiossl.audio.corrupt`, after the mixing.
* **targets**: HuBERT's, over the clean primary. With ``labels`` (k-means label dirs from
  ``audiossl kmeans label``) exactly as :mod:`audiossl.objectives.hubert` reads them; without
  labels, the codes of BEST-RQ's frozen random-projection quantizer
  (:mod:`audiossl.objectives.bestrq`) of the clean input tokens, so the objective runs in one
  stage with no clustering. The prediction head is HuBERT's (cosine to one embedding per
  target / temperature; cross-entropy over masked tokens).

WavLM draws the energy ratio in [-5, 5] dB and keeps the primary dominant by the overlap's
length (under 50%); here the default range starts at 0 dB so that the primary also dominates
in energy. WavLM's gated relative position bias is an encoder feature, not part of the objective.
Validation batches are not mixed (their loss measures clean masked prediction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from audiossl.audio.corrupt import CorruptConfig
from audiossl.data.corrupt import Corruptor
from audiossl.data.dataset import Batch
from audiossl.data.targets import IGNORE
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import register_objective, trim_to_longest
from audiossl.objectives.bestrq import QuantizerConfig, TokenQuantizer
from audiossl.objectives.hubert import HubertConfig, HubertInputs, HubertObjective
from audiossl.objectives.masking import MaskConfig


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="span", start_prob=0.08, span_length=10, min_spans=2)


def _default_quantizer() -> QuantizerConfig:
    return QuantizerConfig(codebook_size=500, codebook_dim=16)


@dataclass(kw_only=True)
class MixConfig:
    """Utterance mixing: which utterances get an overlapping segment of another one, how long, how loud."""

    prob: float = 0.2
    """Probability that an utterance of a training batch gets a mixed segment (our default)."""

    max_fraction: float = 0.5
    """Longest segment, as a fraction of the primary's length (WavLM: under 50%); its length is
    uniform in (0, max_fraction] of the primary's, capped by the other utterance's length."""

    ratio_db: tuple[float, float] = (0.0, 5.0)
    """Range of the primary-to-interferer energy ratio (dB), drawn uniformly per mixed utterance."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(f"mix.prob must be in [0, 1], got {self.prob}")
        if not 0.0 < self.max_fraction <= 1.0:
            raise ConfigError(f"mix.max_fraction must be in (0, 1], got {self.max_fraction}")
        low, high = self.ratio_db
        if low > high:
            raise ConfigError(f"mix.ratio_db must be (low, high), got {self.ratio_db}")
        if self.max_fraction * 10.0 ** (-low / 10.0) >= 1.0:
            raise ConfigError(
                f"mix.ratio_db low {low} dB with mix.max_fraction {self.max_fraction} could add more energy than "
                "the primary utterance has (the primary must stay dominant): raise ratio_db's low end or lower "
                f"max_fraction (need max_fraction * 10^(-low/10) < 1)"
            )


@dataclass(kw_only=True)
class WavLMConfig:
    """WavLM-style denoising masked prediction (HuBERT targets of the clean utterance, mixed inputs)."""

    labels: str | list[str] | None = None
    """Label dir(s) of ``audiossl kmeans label`` (HuBERT targets); None = the random-projection
    quantizer's codes of the clean input (one stage, no clustering)."""

    num_clusters: int | None = None
    """With ``labels``: K; None = the ``n_clusters`` recorded in the (first) label dir."""

    quantizer: QuantizerConfig = field(default_factory=_default_quantizer)
    """Without ``labels``: the frozen quantizer making the targets (one codebook; 500 codes as HuBERT's
    second iteration has clusters)."""

    mix: MixConfig = field(default_factory=MixConfig)
    """Utterance mixing."""

    noise: CorruptConfig | None = None
    """Optional additive noise (and reverberation) after the mixing; None = off."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Span masking of input tokens (HuBERT's: spans of 10 starting at 8% of the tokens, at least 2)."""

    code_dim: int = 256
    """Width of the projection and the target embeddings (compared by cosine similarity)."""

    logit_temperature: float = 0.1
    """tau: cosine similarities are divided by it."""

    masked_weight: float = 1.0
    """Weight of the cross-entropy over masked tokens."""

    unmasked_weight: float = 0.0
    """Weight of the cross-entropy over unmasked tokens (HuBERT and WavLM: 0)."""

    label_tolerance: int = 1
    """With ``labels``: frames by which labels may differ from the encoder's tokens."""

    def __post_init__(self) -> None:
        if self.labels is None and self.quantizer.num_codebooks != 1:
            raise ConfigError("wavlm quantizer targets use one codebook: set quantizer.num_codebooks: 1")

    def hubert(self) -> HubertConfig:
        """The HuBERT config of the prediction part."""
        return HubertConfig(
            labels=self.labels,
            num_clusters=self.num_clusters if self.labels is not None else self.quantizer.codebook_size,
            mask=self.mask,
            code_dim=self.code_dim,
            logit_temperature=self.logit_temperature,
            masked_weight=self.masked_weight,
            unmasked_weight=self.unmasked_weight,
            label_tolerance=self.label_tolerance,
        )


@dataclass
class MixPlan:
    """The random draws of one batch's mixing, all (B,) long or float; ``partner`` -1 = not mixed."""

    partner: torch.Tensor
    source_start: torch.Tensor
    target_start: torch.Tensor
    length: torch.Tensor
    ratio_db: torch.Tensor


def draw_mix(lengths: torch.Tensor, config: MixConfig, generator: torch.Generator | None = None) -> MixPlan:
    """Draw partners, windows and energy ratios for a batch of utterances of ``lengths`` (B,) samples.

    Partner of item b: ``(b + shift) mod B`` with shift uniform in 1..B-1, so never b itself. All
    draws happen on the CPU, as whole-batch tensors, in a fixed order.
    """
    lengths = lengths.cpu().long()
    batch = lengths.shape[0]
    chosen = torch.rand(batch, generator=generator) < config.prob
    shift = torch.randint(1, max(batch, 2), (batch,), generator=generator)
    fraction = 1.0 - torch.rand(batch, generator=generator, dtype=torch.float64)  # (0, 1]
    source_u = torch.rand(batch, generator=generator, dtype=torch.float64)
    target_u = torch.rand(batch, generator=generator, dtype=torch.float64)
    low, high = config.ratio_db
    ratio = low + (high - low) * torch.rand(batch, generator=generator, dtype=torch.float64)
    partner = (torch.arange(batch) + shift) % max(batch, 1)
    wanted = torch.ceil(fraction * config.max_fraction * lengths.double()).long()
    longest = torch.floor(config.max_fraction * lengths.double()).long()
    length = torch.minimum(torch.minimum(wanted, longest), lengths[partner])  # (B,)
    usable = chosen & (batch > 1) & (length >= 1)
    source_start = torch.floor(source_u * (lengths[partner] - length + 1).double()).long()
    target_start = torch.floor(target_u * (lengths - length + 1).double()).long()
    partner = torch.where(usable, partner, torch.full_like(partner, -1))
    return MixPlan(partner, source_start, target_start, length.clamp(min=0), ratio)


def mix_utterances(waveforms: torch.Tensor, lengths: torch.Tensor, plan: MixPlan, eps: float = 1e-10) -> torch.Tensor:
    """Add each planned segment of a partner to its primary -> (B, T); the input is not modified.

    The segment (``source_start``, ``length``) of the partner's clean waveform is scaled so that
    the primary's mean power over its valid samples is ``ratio_db`` above the segment's mean
    power, and added at ``target_start`` (inside the primary's valid samples; padding untouched).
    """
    out = waveforms.clone()
    for row in (plan.partner >= 0).nonzero().flatten().tolist():
        partner, length = int(plan.partner[row]), int(plan.length[row])
        source = int(plan.source_start[row])
        target = int(plan.target_start[row])
        segment = waveforms[partner, source : source + length].float()
        primary = waveforms[row, : int(lengths[row])].float()
        primary_power = primary.square().mean()
        segment_power = segment.square().mean()
        if float(segment_power) <= eps or float(primary_power) <= eps:
            continue
        scale = torch.sqrt(primary_power / (segment_power * 10.0 ** (float(plan.ratio_db[row]) / 10.0)))
        out[row, target : target + length] += (segment * scale).to(out.dtype)
    return out


@register_objective("wavlm", WavLMConfig, "WavLM-style denoising masked prediction: HuBERT targets, mixed inputs")
class WavLMObjective(HubertObjective):
    """WavLM-style pretraining on any encoder with frame tokens (see the module doc)."""

    def __init__(self, encoder: Encoder, config: WavLMConfig):
        super().__init__(encoder, config.hubert())
        self.wavlm_config = config
        self.quantizer = None if config.labels is not None else TokenQuantizer(encoder, config.quantizer)
        self._corruptors: dict[int, Corruptor] = {}

    def target_specs(self) -> dict[str, Any]:
        """HuBERT's frame labels with ``labels``; nothing to read with quantizer targets."""
        return super().target_specs() if self.quantizer is None else {}

    def _noise(self, sample_rate: int) -> Corruptor:
        if sample_rate not in self._corruptors:
            self._corruptors[sample_rate] = Corruptor(self.wavlm_config.noise, sample_rate)
        return self._corruptors[sample_rate]

    def corrupt(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, sample_rate: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Mixing, then the optional noise, of a batch (B, T) -> (B, T); padding stays as it was."""
        plan = draw_mix(lengths, self.wavlm_config.mix, generator)
        mixed = mix_utterances(waveforms, lengths, plan)
        if self.wavlm_config.noise is not None:
            valid = lengths_to_mask(lengths.to(mixed.device), mixed.shape[1])
            noisy = self._noise(sample_rate)(mixed, lengths, generator)
            mixed = torch.where(valid, noisy.to(mixed.dtype), mixed)
        return mixed

    @torch.no_grad()
    def clean_codes(self, batch: Batch, inputs: nn.Module) -> torch.Tensor:
        """Quantizer codes (B, S) of the clean batch through the input pipeline without augmentation."""
        was_training = inputs.training
        inputs.train(False)
        try:
            features, lengths = inputs(batch.waveforms, batch.lengths)
        finally:
            inputs.train(was_training)
        features = trim_to_longest(features, lengths)
        codes, token_lengths = self.quantizer.codes(self.encoder, features, lengths)  # (B, S, 1)
        codes = codes[..., 0]
        return codes.masked_fill(~lengths_to_mask(token_lengths, codes.shape[1]), IGNORE)

    def prepare_batch(self, batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None) -> HubertInputs:
        """Targets of the clean batch, then the mixed (and noisy) batch through the input pipeline."""
        if batch.features is not None:
            raise ConfigError(
                "wavlm mixes waveforms before the front-end: precomputed features (data.fairseq2_fbank) cannot be used"
            )
        if self.quantizer is None:
            if "frames" not in batch.targets:
                raise ConfigError(
                    "wavlm with labels reads them from batch.targets['frames']: the data layer attaches them "
                    "(objective.config.labels)"
                )
            targets = batch.targets["frames"]
        else:
            targets = self.clean_codes(batch, inputs)
        waveforms = batch.waveforms
        if self.training:
            sample_rate = int(inputs.config.sample_rate)
            waveforms = self.corrupt(waveforms, batch.lengths, sample_rate, generator)
        features, lengths = inputs(waveforms, batch.lengths, generator=generator)
        return HubertInputs(features, lengths, targets, None)
