"""``wav2vec2``: contrastive learning over quantized latent frames (Baevski et al. 2020).

The encoder's input tokens (the waveform CNN's layer-normed features, or any spectrogram
tokens) are quantized by a Gumbel product quantizer *unmasked*; spans of those tokens are
replaced by the mask embedding and the encoder runs once. At every masked frame the
projected encoder output must pick the projected quantized vector of that frame among K
distractors drawn from the other masked frames of the same utterance (cosine similarity /
kappa). A codebook diversity loss keeps the codebooks in use and an L2 penalty keeps the CNN
features small.

``total = contrastive + diversity_weight * diversity + feature_penalty_weight * feature_penalty``
with every part a mean (per masked frame, per frame), which is fairseq's sum-then-divide by
the number of masked frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.encoders.base import Encoder, EncoderOutput
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import LossOutput, Objective, register_objective, scalar_metrics, trim_to_longest
from audiossl.objectives.masking import MaskConfig, sample_mask
from audiossl.objectives.quantizer import GumbelVectorQuantizer, QuantizerConfig, QuantizerOutput


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="span", start_prob=0.065, span_length=10, min_spans=2)


@dataclass(kw_only=True)
class Wav2Vec2Config:
    """wav2vec 2.0 pretraining (defaults: the BASE recipe)."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Span masking of latent frames: p = 0.065, M = 10, at least 2 spans."""

    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """Gumbel product quantizer of the unmasked input tokens (G = 2 x V = 320)."""

    project_dim: int = 256
    """Width both the context and the quantized vectors are projected to before comparing."""

    num_negatives: int = 100
    """Distractors K per masked frame, drawn with replacement from the utterance's other masked frames."""

    logit_temperature: float = 0.1
    """kappa: cosine similarities are divided by it."""

    diversity_weight: float = 0.1
    """Weight alpha of the codebook diversity loss."""

    feature_penalty_weight: float = 10.0
    """Weight of the mean squared CNN feature (waveform encoders only)."""

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ConfigError(f"wav2vec2 num_negatives must be >= 1, got {self.num_negatives}")
        if self.logit_temperature <= 0:
            raise ConfigError(f"wav2vec2 logit_temperature must be > 0, got {self.logit_temperature}")


def sample_negatives(
    mask: torch.Tensor, num_negatives: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distractor positions for every masked frame -> (positions (B, S, K) long, valid (B, S) bool).

    For masked frame i of item b, K positions are drawn uniformly, with replacement, among the
    *other* masked frames of item b: never padding, never an unmasked frame, never i itself.
    ``valid`` is False where there is no such frame (unmasked positions, items with a single
    masked frame); positions there are meaningless.
    """
    batch, length = mask.shape
    counts = mask.sum(dim=1)  # (B,)
    rank = mask.long().cumsum(dim=1) - 1  # (B, S) ordinal of each masked frame in its item
    by_rank = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # (B, S) masked positions first
    others = (counts - 1).clamp(min=1).view(batch, 1, 1).to(torch.float64)
    uniform = torch.rand((batch, length, num_negatives), device=mask.device, generator=generator)
    draw = torch.floor(uniform.double() * others).long().clamp(max=others.long() - 1)  # (B, S, K) in [0, m-2]
    draw = draw + (draw >= rank.unsqueeze(-1)).long()  # skip the frame itself
    draw = draw.clamp(max=length - 1)
    positions = by_rank.gather(1, draw.view(batch, -1)).view(batch, length, num_negatives)
    valid = mask & (counts >= 2).unsqueeze(1)
    return positions, valid


def contrastive_loss(
    context: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    negatives: torch.Tensor,
    negatives_valid: torch.Tensor,
    logit_temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """wav2vec 2.0 contrastive loss over the masked frames -> (mean loss, accuracy).

    ``context`` and ``targets`` (B, S, D); ``mask`` (B, S); ``negatives`` (B, S, K) positions
    in the same item and ``negatives_valid`` (B, S) from :func:`sample_negatives`. Logits are
    cosine similarities / ``logit_temperature``; a distractor equal to the positive (the same
    code) is excluded, as in fairseq. Accuracy counts frames whose positive strictly wins.
    """
    batch_index = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]  # (N,)
    predicted = context[mask].float()  # (N, D)
    positive = targets[mask].float()  # (N, D)
    distractors = targets.float()[batch_index.unsqueeze(1), negatives[mask]]  # (N, K, D)
    candidates = torch.cat([positive.unsqueeze(1), distractors], dim=1)  # (N, 1 + K, D)
    logits = F.cosine_similarity(predicted.unsqueeze(1), candidates, dim=-1) / logit_temperature  # (N, 1 + K)
    excluded = (distractors == positive.unsqueeze(1)).all(dim=-1) | ~negatives_valid[mask].unsqueeze(1)  # (N, K)
    logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(excluded, float("-inf"))], dim=1)
    if logits.shape[0] == 0:
        zero = context.sum() * 0.0
        return zero, zero.detach()
    loss = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
    accuracy = (logits[:, 0] > logits[:, 1:].max(dim=1).values).float().mean()
    return loss, accuracy


@dataclass
class ContrastivePass:
    """One masked encoder pass with everything the wav2vec 2.0 family of losses needs.

    ``output``: the encoder output without prefix tokens; ``mask`` (B, S); ``valid`` (B, S)
    non-padding tokens; ``quantized``: the quantizer's output on the unmasked tokens;
    ``feature_penalty``: mean squared front-end feature (None without a front-end).
    """

    output: EncoderOutput
    mask: torch.Tensor
    valid: torch.Tensor
    quantized: QuantizerOutput
    feature_penalty: torch.Tensor | None


@register_objective("wav2vec2", Wav2Vec2Config, "wav2vec 2.0: span masking, Gumbel quantizer, contrastive + diversity")
class Wav2Vec2Objective(Objective):
    """wav2vec 2.0 on any encoder (waveform CNN or spectrogram tokens), through its ``extract_features`` seam."""

    #: Name used in error messages (subclasses override).
    objective_name = "wav2vec2"

    def __init__(self, encoder: Encoder, config: Wav2Vec2Config):
        super().__init__(encoder)
        self.config = config
        self.grid_width = encoder.freq_patches
        self.quantizer = GumbelVectorQuantizer(encoder.token_dim, config.quantizer)
        self.project_quantized = nn.Linear(config.quantizer.code_dim, config.project_dim)
        self.project_context = nn.Linear(encoder.dim, config.project_dim)

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw this objective's mask for tokens of ``token_lengths`` (B,) -> (B, num_tokens) bool."""
        return sample_mask(self.config.mask, token_lengths, num_tokens, self.grid_width, generator)

    def contrastive_pass(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor,
        step: int | None,
        generator: torch.Generator | None = None,
    ) -> ContrastivePass:
        """Run the encoder once with ``mask`` (B, S), quantizing its unmasked input tokens.

        The tokens before projection and the raw front-end features come from the encoder's
        :meth:`~audiossl.encoders.base.Encoder.extract_features`, handed back to the same pass, so
        the front-end runs once.
        """
        extracted = self.encoder.extract_features(features, lengths)
        output = self.encoder(features, lengths, mask=mask, extracted=extracted).without_prefix()
        tokens = extracted.tokens  # (B, S, token_dim)
        valid = lengths_to_mask(output.lengths, tokens.shape[1])  # (B, S)
        quantized = self.quantizer(tokens, valid, step=step, generator=generator)
        penalty = None
        if extracted.frontend is not None:
            frames = extracted.frontend.float().pow(2).mean(dim=-1)  # (B, S)
            penalty = frames.masked_fill(~valid, 0.0).sum() / valid.sum().clamp(min=1)
        return ContrastivePass(output, mask, valid, quantized, penalty)

    def contrastive_parts(
        self, hidden: torch.Tensor, result: ContrastivePass, generator: torch.Generator | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | float]]:
        """Contrastive, diversity and feature-penalty parts (unweighted) and their metrics."""
        config = self.config
        context = self.project_context(hidden)  # (B, S, P)
        targets = self.project_quantized(result.quantized.quantized)  # (B, S, P)
        negatives, negatives_valid = sample_negatives(result.mask, config.num_negatives, generator)
        contrastive, accuracy = contrastive_loss(
            context, targets, result.mask, negatives, negatives_valid, config.logit_temperature
        )
        parts = {
            "contrastive": contrastive,
            "diversity": result.quantized.diversity_loss(config.quantizer.groups, config.quantizer.entries),
        }
        if result.feature_penalty is not None:
            parts["feature_penalty"] = result.feature_penalty
        metrics: dict[str, torch.Tensor | float] = {
            "contrastive_accuracy": accuracy,
            "code_perplexity": result.quantized.code_perplexity,
            "softmax_perplexity": result.quantized.perplexity,
            "temperature": result.quantized.temperature,
            "masked_fraction": result.mask.sum() / result.valid.sum().clamp(min=1),
        }
        return parts, metrics

    def weighted_total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        """contrastive + alpha * diversity + feature_penalty_weight * feature_penalty."""
        total = parts["contrastive"] + self.config.diversity_weight * parts["diversity"]
        if "feature_penalty" in parts:
            total = total + self.config.feature_penalty_weight * parts["feature_penalty"]
        return total

    def loss_with_mask(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The loss for a given ``mask`` (B, S) of input tokens; ``generator`` draws the Gumbel noise and negatives."""
        result = self.contrastive_pass(features, lengths, mask, step, generator)
        parts, metrics = self.contrastive_parts(result.output.last, result, generator)
        return LossOutput(total=self.weighted_total(parts), parts=parts, metrics=scalar_metrics(metrics))

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        features = trim_to_longest(features, lengths)
        token_lengths = self.encoder.token_lengths(lengths)
        mask = self.sample_mask(token_lengths, int(token_lengths.max()), generator)
        return self.loss_with_mask(features, lengths, mask, step, generator)
