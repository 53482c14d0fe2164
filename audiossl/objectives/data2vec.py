"""``data2vec``: regression of an EMA teacher's averaged top-K layers at masked positions (Baevski et al. 2022).

* **teacher** = an exponential moving average of the encoder (registered as ``teacher``, so it is
  in the state dict and a resumed run continues exactly), run in eval mode without gradients on
  the *unmasked* input. Its decay rises linearly from ``ema_decay`` (tau0) at the first update to
  ``ema_end_decay`` (tau_end) at ``ema_anneal_end_step`` and stays there (data2vec: 0.999 ->
  0.9999 over 30k updates). Floating buffers (e.g. batch-norm statistics) are copied from the
  student at every update.
* **targets**: the last ``top_k`` block outputs of the teacher, each instance-normalised per
  channel over the valid time steps of its utterance (padding excluded from the statistics and
  zero in the result), averaged; optionally instance- or layer-normalised once more.
* **student** = the encoder with the mask embedding at span-masked tokens, its final output
  through a linear head; the loss is the squared error (``loss_beta`` 0) or smooth L1 (``loss_beta``
  > 0) summed over channels, scaled by ``1 / sqrt(D)`` (data2vec's default), averaged over the
  masked tokens of the batch.

Difference from the paper: data2vec audio averages the output of each block's feed-forward
network *before* its last residual connection; audiossl's encoders expose block outputs
(:class:`~audiossl.encoders.base.EncoderOutput` ``layers``), so the targets average those. The
teacher and student share token maker and mask embedding shapes, so this works with every
encoder and input kind (patch, frame, waveform).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import LossOutput, Objective, register_objective, scalar_metrics, trim_to_longest
from audiossl.objectives.masking import MaskConfig, sample_mask

logger = logging.getLogger(__name__)


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="span", start_prob=0.065, span_length=10, min_spans=1)


@dataclass(kw_only=True)
class Data2vecConfig:
    """data2vec pretraining (defaults: the data2vec audio BASE recipe, scaled to audiossl's token rate)."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Span masking of the student's input tokens: p = 0.065 of the tokens start a span of 10
    (data2vec audio's mask_prob 0.65, mask_length 10), at least one span."""

    top_k: int = 8
    """Average of the teacher's last K block outputs (data2vec BASE: 8 of 12); an encoder with fewer
    blocks averages all of them (with a warning)."""

    instance_norm_layers: bool = True
    """Instance-normalise every teacher layer (per channel, over the utterance's valid time steps)
    before averaging (data2vec audio: on)."""

    target_norm: str = "none"
    """Normalisation of the averaged target: ``none`` (data2vec audio), ``instance`` (per channel over
    time) or ``layer`` (per token over channels)."""

    loss_beta: float = 0.0
    """0: squared error; > 0: smooth L1 with this beta (data2vec audio: 0)."""

    loss_scale: float | None = None
    """Factor of the per-token loss summed over channels; None = 1 / sqrt(D) (data2vec's default)."""

    ema_decay: float = 0.999
    """tau0: the teacher's EMA decay at the first update."""

    ema_end_decay: float = 0.9999
    """tau_end: the decay reached at ``ema_anneal_end_step`` and kept afterwards."""

    ema_anneal_end_step: int = 30000
    """Updates over which the decay rises linearly from tau0 to tau_end (set it to run.max_steps)."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"data2vec top_k must be >= 1, got {self.top_k}")
        if self.target_norm not in ("none", "instance", "layer"):
            raise ConfigError(f"data2vec target_norm must be none, instance or layer, got {self.target_norm!r}")
        if self.loss_beta < 0:
            raise ConfigError(f"data2vec loss_beta must be >= 0, got {self.loss_beta}")
        if not 0.0 <= self.ema_decay <= self.ema_end_decay <= 1.0:
            raise ConfigError(
                f"data2vec needs 0 <= ema_decay <= ema_end_decay <= 1, got {self.ema_decay} and {self.ema_end_decay}"
            )
        if self.ema_anneal_end_step < 1:
            raise ConfigError(f"data2vec ema_anneal_end_step must be >= 1, got {self.ema_anneal_end_step}")


def masked_instance_norm(hidden: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise every channel of every item over its valid time steps: (B, S, D) + (B,) -> (B, S, D).

    Padding positions take no part in the statistics and are zero in the result (a padded
    batch equals each item alone).
    """
    valid = lengths_to_mask(lengths.to(hidden.device), hidden.shape[1]).unsqueeze(-1)  # (B, S, 1)
    count = valid.sum(dim=1, keepdim=True).clamp_min(1).to(hidden.dtype)  # (B, 1, 1)
    zeroed = hidden.masked_fill(~valid, 0.0)
    mean = zeroed.sum(dim=1, keepdim=True) / count  # (B, 1, D)
    var = ((zeroed - mean).masked_fill(~valid, 0.0) ** 2).sum(dim=1, keepdim=True) / count  # (B, 1, D)
    return ((hidden - mean) / torch.sqrt(var + eps)).masked_fill(~valid, 0.0)


def data2vec_targets(
    layers: list[torch.Tensor],
    lengths: torch.Tensor,
    top_k: int,
    instance_norm_layers: bool = True,
    target_norm: str = "none",
) -> torch.Tensor:
    """Average of the last ``top_k`` of ``layers`` (each (B, S, D)), normalised as configured -> (B, S, D)."""
    chosen = [layer.float() for layer in layers[-top_k:]]
    if instance_norm_layers:
        chosen = [masked_instance_norm(layer, lengths) for layer in chosen]
    target = torch.stack(chosen).mean(dim=0)  # (B, S, D)
    if target_norm == "instance":
        target = masked_instance_norm(target, lengths)
    elif target_norm == "layer":
        target = F.layer_norm(target, target.shape[-1:])
    valid = lengths_to_mask(lengths.to(target.device), target.shape[1]).unsqueeze(-1)
    return target.masked_fill(~valid, 0.0)


def regression_loss(predictions: torch.Tensor, targets: torch.Tensor, beta: float, scale: float) -> torch.Tensor:
    """Per-token loss summed over channels, times ``scale``: (N, D) x2 -> (N,)."""
    if beta == 0:
        per = (predictions.float() - targets.float()) ** 2
    else:
        per = F.smooth_l1_loss(predictions.float(), targets.float(), reduction="none", beta=beta)
    return per.sum(dim=-1) * scale


def ema_decay_at(step: int, start: float, end: float, end_step: int) -> float:
    """Decay of the update after ``step`` finished optimizer steps (1-based): linear from start to end."""
    if step >= end_step:
        return end
    progress = max(step - 1, 0) / end_step
    return start + (end - start) * progress


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher = decay * teacher + (1 - decay) * student for parameters; floating buffers copied."""
    for target, source in zip(teacher.parameters(), student.parameters(), strict=True):
        target.mul_(decay).add_(source.detach(), alpha=1.0 - decay)
    for target, source in zip(teacher.buffers(), student.buffers(), strict=True):
        target.copy_(source)


@register_objective("data2vec", Data2vecConfig, "data2vec: regress an EMA teacher's averaged top-K layers")
class Data2vecObjective(Objective):
    """data2vec on any encoder (see the module doc)."""

    def __init__(self, encoder: Encoder, config: Data2vecConfig):
        super().__init__(encoder)
        self.config = config
        num_layers = len(encoder.block_modules())
        self.top_k = config.top_k
        if num_layers and config.top_k > num_layers:
            logger.warning(
                "data2vec top_k %d is more than the encoder's %d blocks: the targets average all %d",
                config.top_k,
                num_layers,
                num_layers,
            )
            self.top_k = num_layers
        self.head = nn.Linear(encoder.dim, encoder.dim)
        self.teacher = copy.deepcopy(encoder)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.grid_width = encoder.freq_patches

    def train(self, mode: bool = True) -> Data2vecObjective:
        """Like ``nn.Module.train``, but the teacher always stays in eval mode (no dropout)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def decay_at(self, step: int) -> float:
        config = self.config
        return ema_decay_at(step, config.ema_decay, config.ema_end_decay, config.ema_anneal_end_step)

    def on_step_end(self, step: int) -> None:
        """EMA update of the teacher after optimizer step ``step``."""
        ema_update(self.teacher, self.encoder, self.decay_at(step))

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw this objective's mask for tokens of ``token_lengths`` (B,) -> (B, num_tokens) bool."""
        return sample_mask(self.config.mask, token_lengths, num_tokens, self.grid_width, generator)

    @torch.no_grad()
    def targets(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's targets on the unmasked input -> ((B, S, D), token lengths (B,))."""
        self.teacher.eval()
        output = self.teacher(features, lengths).without_prefix()
        config = self.config
        top_k = min(self.top_k, len(output.layers))
        target = data2vec_targets(output.layers, output.lengths, top_k, config.instance_norm_layers, config.target_norm)
        return target, output.lengths

    def loss_with_mask(
        self, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor
    ) -> LossOutput:
        """The loss for a given ``mask`` (B, S) and teacher ``targets`` (B, S, D)."""
        config = self.config
        output = self.encoder(features, lengths, mask=mask).without_prefix()
        selected = mask & lengths_to_mask(output.lengths, mask.shape[1])  # (B, S)
        predictions = self.head(output.last[selected])  # (N, D)
        chosen = targets[selected]  # (N, D)
        scale = config.loss_scale if config.loss_scale is not None else 1.0 / math.sqrt(chosen.shape[-1])
        if chosen.shape[0] == 0:
            loss = output.last.sum() * 0.0
        else:
            loss = regression_loss(predictions, chosen, config.loss_beta, scale).mean()
        metrics = {
            "masked_tokens": selected.sum().float(),
            "target_std": chosen.float().std(dim=0).mean() if chosen.shape[0] > 1 else 0.0,
            "prediction_std": predictions.detach().float().std(dim=0).mean() if chosen.shape[0] > 1 else 0.0,
        }
        return LossOutput(total=loss, parts={"regression": loss}, metrics=scalar_metrics(metrics))

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        features = trim_to_longest(features, lengths)
        targets, token_lengths = self.targets(features, lengths)  # (B, S, D), (B,)
        mask = self.sample_mask(token_lengths, targets.shape[1], generator)
        out = self.loss_with_mask(features, lengths, mask, targets)
        out.metrics["ema_decay"] = self.decay_at(max(int(step or 0), 1))
        return out
