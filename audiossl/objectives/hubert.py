"""``hubert``: masked prediction of frame cluster labels (Hsu et al. 2021), with the HuBERTopic option.

Spans of input tokens are replaced by the mask embedding and the encoder runs once. Every
output frame is projected to ``code_dim`` and scored against one learned embedding per
cluster by cosine similarity / temperature; the loss is the cross-entropy of the frame's
cluster label (from k-means, :mod:`audiossl.cluster`) over the masked frames, plus optionally
over the unmasked ones:

``total = masked_weight * CE(masked) + unmasked_weight * CE(unmasked) [+ topic.weight * CE(topic)]``

with each CE a mean over its frames (HuBERT: masked_weight 1, unmasked_weight 0).

Targets come from a label dir (``audiossl kmeans label``: labels + their frame rate), which
the objective declares (:meth:`HubertObjective.target_specs`) and the data layer attaches to
every batch (:class:`~audiossl.data.targets.FrameTargets`): each utterance's labels resampled
to the encoder's token rate (tokens per second of the run's input pipeline and token maker,
so stacked frames are accounted for), cropped like the audio and checked against the
encoder's tokens: a difference of more than ``label_tolerance`` frames on an utterance stops
the run with that utterance named. The objective reads ``batch.targets["frames"]``; it never
opens a label file. Patch tokens with several frequency patches per time step have no frame
to label and are refused.

With ``topic`` set, HuBERTopic (Maekaku et al. 2023, :mod:`audiossl.objectives.topic`) adds an
utterance-level loss: a linear classifier on the mean-pooled final output predicts the
utterance's LDA topic over its bag of labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data.dataset import Batch
from audiossl.data.targets import IGNORE, FrameLabelSpec, TopicSpec, recorded_clusters
from audiossl.data.topics import TopicConfig
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl.nn.pooling import masked_mean
from audiossl.objectives.base import (
    FeatureInputs,
    LossOutput,
    Objective,
    pipeline_features,
    register_objective,
    scalar_metrics,
    trim_to_longest,
)
from audiossl.objectives.masking import MaskConfig, sample_mask

logger = logging.getLogger(__name__)


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="span", start_prob=0.08, span_length=10, min_spans=2)


@dataclass(kw_only=True)
class HubertConfig:
    """HuBERT pretraining (defaults: the BASE recipe)."""

    labels: str | list[str] | None = None
    """Label dir(s) written by ``audiossl kmeans label`` covering every training (and validation)
    utterance; required to train."""

    num_clusters: int | None = None
    """Number of clusters K; None = the ``n_clusters`` recorded in the (first) label dir."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Span masking of input tokens: p = 0.08 of the tokens start a span of M = 10 (HuBERT's 80%
    "mask_prob"), at least 2 spans."""

    code_dim: int = 256
    """Width of the projection and of the cluster embeddings that are compared by cosine similarity."""

    logit_temperature: float = 0.1
    """tau: cosine similarities are divided by it."""

    masked_weight: float = 1.0
    """Weight alpha of the cross-entropy over masked frames."""

    unmasked_weight: float = 0.0
    """Weight of the cross-entropy over unmasked frames (HuBERT: 0; its accuracy is logged either way)."""

    label_tolerance: int = 1
    """Frames by which an utterance's labels may differ from its encoder tokens (edge effects); beyond
    it the run stops naming the utterance."""

    topic: TopicConfig | None = None
    """HuBERTopic: an LDA topic loss on mean-pooled encoder output; None = off."""

    def __post_init__(self) -> None:
        if self.num_clusters is not None and self.num_clusters < 2:
            raise ConfigError(f"hubert num_clusters must be >= 2, got {self.num_clusters}")
        if self.code_dim < 1:
            raise ConfigError(f"hubert code_dim must be >= 1, got {self.code_dim}")
        if self.logit_temperature <= 0:
            raise ConfigError(f"hubert logit_temperature must be > 0, got {self.logit_temperature}")
        if self.masked_weight < 0 or self.unmasked_weight < 0:
            raise ConfigError("hubert masked_weight and unmasked_weight must be >= 0")
        if self.label_tolerance < 0:
            raise ConfigError(f"hubert label_tolerance must be >= 0, got {self.label_tolerance}")

    @property
    def label_dirs(self) -> list[str]:
        """The label dirs as a list (empty when none is set)."""
        if self.labels is None:
            return []
        return [self.labels] if isinstance(self.labels, str) else list(self.labels)


def token_rate(inputs: nn.Module, encoder: Encoder, sample_rate: int) -> float:
    """Encoder tokens per second for waveforms at ``sample_rate``, through ``inputs`` (its ``output_lengths``)."""
    probe = torch.tensor([100 * sample_rate, 200 * sample_rate])
    with torch.no_grad():
        tokens = encoder.token_lengths(inputs.output_lengths(probe))
    return round(float(tokens[1] - tokens[0]) / 100.0, 6)


@dataclass
class HubertInputs(FeatureInputs):
    """HuBERT's inputs: the features plus the batch's frame targets (and utterance topics)."""

    targets: torch.Tensor | None = None
    """(B, S) long cluster labels of the input tokens, IGNORE where not scored (padding)."""

    topics: torch.Tensor | None = None
    """HuBERTopic targets: (B,) long dominant topics or (B, T) float distributions; None = off."""


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over items of ``-sum_t targets * log_softmax(logits)``: (B, T) x2 -> scalar."""
    return -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


@register_objective("hubert", HubertConfig, "HuBERT: masked prediction of k-means frame labels (+ HuBERTopic)")
class HubertObjective(Objective):
    """HuBERT on any encoder with frame tokens (stacked frames, waveform CNN, or full-height patches)."""

    inputs_type = HubertInputs
    target_heads = ("codewords", "topic_head.")

    def __init__(self, encoder: Encoder, config: HubertConfig):
        super().__init__(encoder)
        self.config = config
        freq_patches = encoder.freq_patches
        if freq_patches != 1:
            raise ConfigError(
                f"hubert predicts one label per time step, but the encoder has {freq_patches} frequency patches "
                "per step (patch tokens): use frame tokens (encoder.overrides.input.kind: frame) or patches "
                "spanning every frequency bin"
            )
        num_clusters = config.num_clusters
        if num_clusters is None and config.label_dirs:
            num_clusters = recorded_clusters(config.label_dirs[0])
        if num_clusters is None:
            raise ConfigError(
                "hubert needs its cluster labels: set objective.config.labels to a label dir "
                "(audiossl kmeans label), or objective.config.num_clusters"
            )
        self.num_clusters = num_clusters
        self.projection = nn.Linear(encoder.dim, config.code_dim)
        self.codewords = nn.Parameter(torch.empty(num_clusters, config.code_dim).normal_())  # (K, C)
        self.topic_head = None if config.topic is None else nn.Linear(encoder.dim, config.topic.num_topics)

    # ------------------------------------------------------------------------- targets

    def target_specs(self) -> dict[str, Any]:
        """``frames``: the label dirs' frame labels at the token rate; ``topics`` with HuBERTopic."""
        if not self.config.label_dirs:
            raise ConfigError("hubert needs objective.config.labels (a label dir from `audiossl kmeans label`)")
        label_dirs = tuple(self.config.label_dirs)
        specs: dict[str, Any] = {"frames": FrameLabelSpec(label_dirs, self.num_clusters, self.config.label_tolerance)}
        if self.config.topic is not None:
            specs["topics"] = TopicSpec(label_dirs, self.num_clusters, self.config.topic)
        return specs

    def prepare_batch(self, batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None) -> HubertInputs:
        """Features, lengths and the batch's frame ``targets`` (B, S) (and ``topics`` with HuBERTopic)."""
        if "frames" not in batch.targets:
            raise ConfigError(
                "hubert reads its frame labels from batch.targets['frames']: the data layer attaches them "
                "(objective.config.labels; audiossl.train.targets.attach_targets)"
            )
        features, lengths = pipeline_features(batch, inputs, generator)
        topics = batch.targets.get("topics") if self.config.topic is not None else None
        return HubertInputs(features, lengths, batch.targets["frames"], topics)

    # ------------------------------------------------------------------------- loss

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw this objective's mask for tokens of ``token_lengths`` (B,) -> (B, num_tokens) bool."""
        return sample_mask(self.config.mask, token_lengths, num_tokens, 1, generator)

    def cluster_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of projected frames (N, D) to every cluster embedding / tau -> (N, K)."""
        projected = F.normalize(self.projection(hidden).float(), dim=-1)  # (N, C)
        codewords = F.normalize(self.codewords.float(), dim=-1)  # (K, C)
        return projected @ codewords.T / self.config.logit_temperature

    def frame_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, selected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy over the ``selected`` (B, S) frames -> (mean loss, accuracy)."""
        logits = self.cluster_logits(hidden[selected])  # (N, K)
        labels = targets[selected]  # (N,)
        if labels.numel() == 0:
            zero = hidden.sum() * 0.0
            return zero, zero.detach()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        return loss, accuracy

    def loss_with_mask(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor,
        targets: torch.Tensor,
        topics: torch.Tensor | None = None,
    ) -> LossOutput:
        """The loss for a given ``mask`` (B, S) and ``targets`` (B, S) (IGNORE where not scored)."""
        config = self.config
        output = self.encoder(features, lengths, mask=mask).without_prefix()
        hidden = output.last  # (B, S, D)
        valid = lengths_to_mask(output.lengths, hidden.shape[1]) & (targets != IGNORE)  # (B, S)
        masked, masked_accuracy = self.frame_loss(hidden, targets, mask & valid)
        if config.unmasked_weight > 0:
            unmasked, unmasked_accuracy = self.frame_loss(hidden, targets, ~mask & valid)
        else:
            with torch.no_grad():
                unmasked, unmasked_accuracy = self.frame_loss(hidden, targets, ~mask & valid)
        parts = {"masked": masked, "unmasked": unmasked.detach() if config.unmasked_weight == 0 else unmasked}
        total = config.masked_weight * masked + config.unmasked_weight * unmasked
        metrics: dict[str, torch.Tensor | float] = {
            "masked_accuracy": masked_accuracy,
            "unmasked_accuracy": unmasked_accuracy,
            "masked_fraction": (mask & valid).sum() / valid.sum().clamp(min=1),
        }
        if self.topic_head is not None:
            if topics is None:
                raise ConfigError("hubert with topic needs utterance topics (its batch_inputs provides them)")
            pooled = masked_mean(hidden, output.lengths)  # (B, D)
            topic_logits = self.topic_head(pooled).float()  # (B, T)
            if topics.dim() == 1:
                parts["topic"] = F.cross_entropy(topic_logits, topics)
                metrics["topic_accuracy"] = (topic_logits.argmax(dim=-1) == topics).float().mean()
            else:
                parts["topic"] = soft_cross_entropy(topic_logits, topics)
                metrics["topic_accuracy"] = (topic_logits.argmax(dim=-1) == topics.argmax(dim=-1)).float().mean()
            total = total + config.topic.weight * parts["topic"]
        return LossOutput(total=total, parts=parts, metrics=scalar_metrics(metrics))

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor | None = None,
        topics: torch.Tensor | None = None,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """``targets`` (B, S) long cluster labels of the input tokens (IGNORE at padding); ``topics`` (B,) or (B, T)."""
        if targets is None:
            raise ConfigError("hubert needs frame targets (B, S); the trainer gets them from batch_inputs")
        features = trim_to_longest(features, lengths)
        token_lengths = self.encoder.token_lengths(lengths)
        longest = int(token_lengths.max())
        if targets.shape[1] < longest:
            targets = F.pad(targets, (0, longest - targets.shape[1]), value=IGNORE)
        targets = targets[:, :longest].long()  # (B, S)
        mask = self.sample_mask(token_lengths, longest, generator)
        return self.loss_with_mask(features, lengths, mask, targets, topics)
