"""``mspm``: masked spectrogram patch modeling (SSAST, Gong et al. 2022).

Patches (or stacked frames) of the input spectrogram are masked, the encoder runs once with
the mask embedding in their place, and every masked position's output feeds two heads:

- discriminative: an InfoNCE over the masked set of the same utterance. The prediction of
  masked position i is scored against every true masked patch j by a dot product; the true
  patch i is the positive, the others the negatives.
- generative: the mean squared error between a reconstruction and the true patch.

``total = discriminative + generative_weight * generative`` (SSAST uses 10). SSAST computes
the two losses in two encoder passes with different masks; one pass with both heads costs
half the encoder work (see bench/objectives.py). Items with different numbers of masked
tokens are handled by packing the masked positions into (B, M) slots with a validity mask,
never by a Python loop over items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.objectives.base import LossOutput, Objective, register_objective, scalar_metrics, trim_to_longest
from audiossl.objectives.masking import MaskConfig, sample_mask


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="chunk", count=400, ratio=0.8)


@dataclass(kw_only=True)
class MSPMConfig:
    """Masked spectrogram patch modeling (defaults: SSAST patch pretraining)."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Which tokens to mask: SSAST masks 400 of 512 patches in chunks of 3-5 patches."""

    generative_weight: float = 10.0
    """Weight of the reconstruction (MSE) loss against the InfoNCE loss (SSAST: 10)."""

    head_hidden_dim: int | None = None
    """Hidden width of the two prediction heads (Linear -> ReLU -> Linear); None = encoder width."""

    normalize_targets: bool = False
    """Normalise every target patch to zero mean and unit variance (MAE's per-patch targets);
    SSAST uses the globally normalised spectrogram as is."""

    def __post_init__(self) -> None:
        if self.generative_weight < 0:
            raise ConfigError(f"mspm generative_weight must be >= 0, got {self.generative_weight}")


def gather_masked(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack the masked positions of every item to the front.

    ``values`` (B, S, ...), ``mask`` (B, S) bool -> (packed (B, M, ...), positions (B, M) long,
    slots (B, M) bool valid), with M the largest masked count of the batch. Item b's masked
    positions come first, in order; slots past its count are invalid and repeat position 0.
    """
    counts = mask.sum(dim=1)  # (B,)
    width = max(int(counts.max()), 1) if counts.numel() else 1
    positions = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :width]  # (B, M)
    slots = torch.arange(width, device=mask.device).unsqueeze(0) < counts.unsqueeze(1)  # (B, M)
    positions = positions.masked_fill(~slots, 0)
    index = positions.view(*positions.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
    return values.gather(1, index), positions, slots


def info_nce(
    predictions: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSAST's discriminative loss over packed masked positions -> (mean loss, accuracy).

    ``predictions`` and ``targets`` (B, M, P), ``slots`` (B, M) valid. Slot i of item b is
    scored against all valid targets of item b; the loss is the cross-entropy of picking
    target i, averaged over all valid slots of the batch; the accuracy counts arg-max hits.
    """
    scores = torch.bmm(predictions.float(), targets.float().transpose(1, 2))  # (B, M, M)
    # A finite floor, not -inf: an item with no masked token must give zeros, not NaN gradients.
    scores = scores.masked_fill(~slots.unsqueeze(1), torch.finfo(scores.dtype).min)
    log_probs = scores.log_softmax(dim=-1)
    positive = log_probs.diagonal(dim1=1, dim2=2)  # (B, M)
    total = slots.sum().clamp(min=1)
    loss = -(positive.masked_fill(~slots, 0.0)).sum() / total
    hits = (scores.argmax(dim=-1) == torch.arange(scores.shape[1], device=scores.device)) & slots
    return loss, hits.sum() / total


def masked_mse(predictions: torch.Tensor, targets: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the valid slots: (B, M, P) x2, (B, M) -> scalar."""
    per_slot = (predictions.float() - targets.float()).pow(2).mean(dim=-1)  # (B, M)
    return per_slot.masked_fill(~slots, 0.0).sum() / slots.sum().clamp(min=1)


def _head(dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


@register_objective("mspm", MSPMConfig, "SSAST masked spectrogram patch modeling: InfoNCE + MSE, one pass")
class MSPMObjective(Objective):
    """Masked spectrogram patch modeling on any spectrogram encoder (patch or frame tokens)."""

    def __init__(self, encoder: Encoder, config: MSPMConfig):
        super().__init__(encoder)
        self.config = config
        input_config = encoder.input_config
        if input_config.kind not in ("patch", "frame"):
            raise ConfigError(
                f"mspm predicts spectrogram patches or frames; the encoder's input kind is {input_config.kind!r}"
            )
        self.input_config = input_config
        self.grid_width = encoder.freq_patches
        target_dim = encoder.token_dim  # the patch (pt * pf) or the stacked frames (C * stack)
        hidden = config.head_hidden_dim or encoder.dim
        self.discriminative_head = _head(encoder.dim, hidden, target_dim)
        self.generative_head = _head(encoder.dim, hidden, target_dim)

    def targets(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The true tokens the encoder sees, before projection -> ((B, S, P), token lengths (B,))."""
        extracted = self.encoder.extract_features(features, lengths)
        tokens, token_lengths = extracted.tokens, extracted.lengths  # (B, S, P), (B,)
        if self.config.normalize_targets:
            mean = tokens.mean(dim=-1, keepdim=True)
            var = tokens.var(dim=-1, keepdim=True, unbiased=False)
            tokens = (tokens - mean) / (var + 1e-6).sqrt()
        return tokens, token_lengths

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw this objective's mask for tokens of ``token_lengths`` (B,) -> (B, num_tokens) bool."""
        return sample_mask(self.config.mask, token_lengths, num_tokens, self.grid_width, generator)

    def masked_outputs(self, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One encoder pass with ``mask`` -> final hidden states of the input tokens (B, S, D)."""
        return self.encoder(features, lengths, mask=mask).without_prefix().last

    def loss_with_mask(
        self, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor
    ) -> LossOutput:
        """Both losses for a given ``mask`` (B, S) and ``targets`` (B, S, P), in one encoder pass."""
        hidden = self.masked_outputs(features, lengths, mask)  # (B, S, D)
        packed, positions, slots = gather_masked(hidden, mask)  # (B, M, D)
        true = gather_masked(targets, mask)[0]  # (B, M, P)
        discriminative, accuracy = info_nce(self.discriminative_head(packed), true, slots)
        generative = masked_mse(self.generative_head(packed), true, slots)
        total = discriminative + self.config.generative_weight * generative
        metrics = scalar_metrics(
            {
                "discriminative_accuracy": accuracy,
                "reconstruction_mse": generative,
                "masked_tokens": slots.sum().float(),
            }
        )
        return LossOutput(
            total=total, parts={"discriminative": discriminative, "generative": generative}, metrics=metrics
        )

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        features = trim_to_longest(features, lengths)
        targets, token_lengths = self.targets(features, lengths)  # (B, S, P), (B,)
        mask = self.sample_mask(token_lengths, targets.shape[1], generator)
        return self.loss_with_mask(features, lengths, mask, targets)
