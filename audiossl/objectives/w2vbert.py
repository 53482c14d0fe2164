"""``w2vbert``: contrastive learning plus masked prediction of code ids (Chung et al. 2021).

w2v-BERT splits the encoder in two: the first ``contrastive_layer`` blocks (the contrastive
module) are trained with the wav2vec 2.0 loss on their output, and the final output (the
masked-prediction module) predicts, at every masked frame, the quantizer's code ids of that
frame (cross-entropy per codebook group). Both losses come from one masked encoder pass and
train the whole network end to end. Here the split is a layer index of any encoder: with the
Conformer this is the paper's set-up, and it runs unchanged on AST or Mamba.

``total = contrastive_weight * (contrastive + diversity_weight * diversity
+ feature_penalty_weight * feature_penalty) + mlm_weight * mlm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.objectives.base import LossOutput, register_objective, scalar_metrics
from audiossl.objectives.wav2vec2 import Wav2Vec2Config, Wav2Vec2Objective


@dataclass(kw_only=True)
class W2VBertConfig(Wav2Vec2Config):
    """w2v-BERT pretraining: the wav2vec 2.0 settings plus the layer split and loss weights."""

    contrastive_layer: int | None = None
    """Block (1-based) whose output the contrastive loss reads; None = half of the encoder's blocks
    (w2v-BERT: 12 contrastive + 12 masked-prediction Conformer blocks)."""

    contrastive_weight: float = 1.0
    """Weight of the contrastive module's loss (contrastive + diversity + feature penalty)."""

    mlm_weight: float = 1.0
    """Weight of the masked prediction loss (w2v-BERT: 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.contrastive_layer is not None and self.contrastive_layer < 1:
            raise ConfigError(f"w2vbert contrastive_layer must be >= 1, got {self.contrastive_layer}")
        if self.contrastive_weight < 0 or self.mlm_weight < 0:
            raise ConfigError("w2vbert loss weights must be >= 0")


def masked_code_loss(
    logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the code ids at masked frames -> (mean loss, accuracy).

    ``logits`` (B, S, G, V), ``codes`` (B, S, G) long, ``mask`` (B, S). Averaged over masked
    frames and groups; accuracy is the fraction of (frame, group) ids predicted exactly.
    """
    picked = logits[mask].float()  # (N, G, V)
    target = codes[mask]  # (N, G)
    if picked.shape[0] == 0:
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    loss = F.cross_entropy(picked.flatten(0, 1), target.flatten())
    accuracy = (picked.argmax(dim=-1) == target).float().mean()
    return loss, accuracy


@register_objective("w2vbert", W2VBertConfig, "w2v-BERT: contrastive at a middle layer + masked code prediction")
class W2VBertObjective(Wav2Vec2Objective):
    """w2v-BERT on any encoder built on a TokenEmbedding."""

    objective_name = "w2vbert"

    def __init__(self, encoder: Encoder, config: W2VBertConfig):
        super().__init__(encoder, config)
        self.config: W2VBertConfig = config
        layer = config.contrastive_layer or max(encoder.num_layers // 2, 1)
        if layer > encoder.num_layers:
            raise ConfigError(f"w2vbert contrastive_layer {layer} is past the encoder's {encoder.num_layers} blocks")
        self.contrastive_layer = layer
        # Block outputs of pre-norm encoders are not normalised: normalise before projecting.
        self.contrastive_norm = nn.LayerNorm(encoder.dim)
        groups, entries = config.quantizer.groups, config.quantizer.entries
        self.code_head = nn.Linear(encoder.dim, groups * entries)

    def loss_with_mask(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        config = self.config
        result = self.contrastive_pass(features, lengths, mask, step, generator)
        middle = self.contrastive_norm(result.output.layers[self.contrastive_layer - 1])  # (B, S, D)
        parts, metrics = self.contrastive_parts(middle, result, generator)
        contrastive_total = self.weighted_total(parts)
        batch, length, _ = middle.shape
        code_logits = self.code_head(result.output.last).view(
            batch, length, config.quantizer.groups, config.quantizer.entries
        )  # (B, S, G, V)
        mlm, mlm_accuracy = masked_code_loss(code_logits, result.quantized.codes, mask)
        parts["mlm"] = mlm
        metrics["mlm_accuracy"] = mlm_accuracy
        total = config.contrastive_weight * contrastive_total + config.mlm_weight * mlm
        return LossOutput(total=total, parts=parts, metrics=scalar_metrics(metrics))
