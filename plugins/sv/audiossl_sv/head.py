"""Speaker head: attentive statistics pooling, an embedding layer, and the AAM-softmax loss.

* Attentive statistics pooling (Okabe et al., "Attentive statistics pooling for deep speaker
  embedding", Interspeech 2018), audiossl's :class:`~audiossl.nn.pooling.AttentiveStatsPool`:
  attention-weighted mean and standard deviation of the valid frames.
* Embedding layer: a linear map of the pooled statistics followed by batch norm (the x-vector /
  ECAPA recipe); its output is the speaker embedding that is scored by cosine similarity. A
  training batch of one utterance normalises with the running statistics (batch statistics of
  a single item are undefined).
* AAM-softmax (additive angular margin: Deng et al., "ArcFace", CVPR 2019; for speakers Xiang
  et al., "Margin matters", Interspeech 2019): cross-entropy over ``s * cos(theta_j)`` where the
  true class's angle is widened to ``theta_y + m``. Past ``theta_y + m = pi`` the cosine would turn
  back up, so there the target logit continues as ``cos(theta_y) - m sin(m)`` (the tangent of
  ``cos(theta + m)`` at ``theta = pi - m``), keeping it monotonic in the angle. A margin warm-up
  ramps ``m`` linearly from 0, since a large margin on random embeddings stalls training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.nn.pooling import AttentiveStatsPool


@dataclass(kw_only=True)
class SpeakerHeadConfig:
    """Sizes of the speaker head and the AAM-softmax loss."""

    hidden_dim: int = 256
    """Width of the frame projection applied before pooling (0: pool the upstream features directly)."""
    attention_dim: int = 128
    """Width of the attention network of the pooling."""
    embedding_dim: int = 192
    """Size of the speaker embedding."""
    scale: float = 30.0
    """AAM-softmax scale ``s`` applied to the cosines."""
    margin: float = 0.2
    """AAM-softmax additive angular margin ``m`` (radians) once warmed up."""
    margin_warmup_steps: int = 0
    """Steps over which the margin ramps linearly from 0 to ``margin`` (0: full margin from the start)."""


class SpeakerHead(nn.Module):
    """Frames (B, S, D) + lengths -> speaker embeddings (B, E): projection, attentive stats pooling, linear + BN."""

    def __init__(self, input_dim: int, config: SpeakerHeadConfig):
        super().__init__()
        self.config = config
        if config.hidden_dim > 0:
            self.projection: nn.Module = nn.Sequential(nn.Linear(input_dim, config.hidden_dim), nn.ReLU())
            pooled_dim = config.hidden_dim
        else:
            self.projection = nn.Identity()
            pooled_dim = input_dim
        self.pooling = AttentiveStatsPool(pooled_dim, config.attention_dim)
        self.embedding = nn.Linear(self.pooling.out_dim, config.embedding_dim)
        self.norm = nn.BatchNorm1d(config.embedding_dim)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pooled = self.pooling(self.projection(frames), lengths)  # (B, 2 H)
        embeddings = self.embedding(pooled)  # (B, E)
        if self.training and embeddings.shape[0] == 1:
            norm = self.norm
            return F.batch_norm(
                embeddings, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
            )
        return self.norm(embeddings)


def margin_at(step: int, margin: float, warmup_steps: int) -> float:
    """The AAM margin at ``step``: linear from 0 to ``margin`` over ``warmup_steps``, then constant."""
    if warmup_steps <= 0:
        return margin
    return margin * min(1.0, max(0, step) / warmup_steps)


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax loss over ``num_classes`` speakers (see module doc)."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.2):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"AAM-softmax needs at least 2 classes, got {num_classes}")
        self.scale = scale
        self.margin = margin
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        """Scaled logits (B, C) with the margin applied to each row's true class."""
        m = self.margin if margin is None else margin
        cosine = F.normalize(embeddings.float(), dim=-1) @ F.normalize(self.weight.float(), dim=-1).T  # (B, C)
        target = cosine.gather(1, labels.view(-1, 1))  # (B, 1)
        if m != 0.0:
            sine = (1.0 - target.square()).clamp_min(0.0).sqrt()
            shifted = target * math.cos(m) - sine * math.sin(m)  # cos(theta + m)
            beyond = target <= math.cos(math.pi - m)  # theta + m >= pi
            target = torch.where(beyond, target - m * math.sin(m), shifted)
        cosine = cosine.scatter(1, labels.view(-1, 1), target)
        return self.scale * cosine

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, margin: float | None = None) -> torch.Tensor:
        """Mean cross-entropy of ``embeddings`` (B, E) against class ``labels`` (B,)."""
        return F.cross_entropy(self.logits(embeddings, labels, margin), labels)
