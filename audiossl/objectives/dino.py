"""``dino``: self-distillation with no labels for utterance (speaker) embeddings.

DINO (Caron et al., "Emerging properties in self-supervised vision transformers", 2021) as
speaker verification uses it (Chen et al. 2022; Han et al. 2022; Jung et al. 2022):

* **views**: :meth:`DinoObjective.prepare_batch` cuts every utterance of a batch into
  ``global_crops`` long and ``local_crops`` short segments at random offsets (an utterance
  shorter than a crop is taken whole), corrupts each with additive noise and reverberation
  (:mod:`audiossl.audio.corrupt`) and runs every crop set through the front-end;
* **student** = encoder + pooling (mean, or attentive statistics, Okabe et al. 2018) +
  projection head (MLP -> L2-normalised bottleneck -> K weight-normalised prototypes); it sees
  all views;
* **teacher** = an exponential moving average of the student (momentum from ``momentum`` to
  ``momentum_final`` on a cosine schedule over ``momentum_steps``, updated in
  :meth:`on_step_end`), fed only the global views, never back-propagated;
* **loss**: cross-entropy between the teacher's distribution of one global view and the
  student's distribution of every *other* view, averaged over pairs; no negatives. Collapse is
  avoided by **centering** (the teacher's logits minus an EMA ``center`` of their batch mean)
  and **sharpening** (teacher temperature warmed up from ``teacher_temperature`` to
  ``teacher_temperature_final``, below the student's).

Health metrics: ``teacher_entropy`` (log K = uniform collapse, 0 = one-hot collapse),
``kl_teacher_student`` and ``center_norm``; with ``cluster``, ``gate`` (-1 before the first
fit), ``kept_fraction``, ``corrected_fraction`` and ``pseudo_accuracy``. The teacher and the centre are in the state
dict, so a resumed run continues exactly; ``load_pretrained`` gives the *student* encoder
(its keys start with ``encoder.``).

With ``cluster`` set, the objective also trains a pseudo-speaker classifier with the dynamic
loss-gate and label correction (the cluster-aware iteration, :mod:`audiossl.cluster.speakers`);
``dino_weight: 0`` trains the classifier alone, as Han et al.'s second stage does. The
utterances' rows in the pseudo-label table travel with the batch (``batch.targets
["pseudo_speaker"]``, declared by :meth:`DinoObjective.target_specs`); the previous
iteration's weights come from ``run.init_from`` (the classifier, ``cluster.``, stays fresh).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.audio.corrupt import CorruptConfig
from audiossl.data.corrupt import Corruptor
from audiossl.data.targets import TableRowSpec, read_pseudo_labels
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.nn.pooling import AttentiveStatsPool, MeanPool
from audiossl.nn.pseudo_labels import ClusterConfig, PseudoSpeakerHead
from audiossl.objectives.base import LossOutput, Objective, register_objective, scalar_metrics


@dataclass(kw_only=True)
class DinoConfig:
    """DINO for utterance embeddings (defaults: speaker DINO on VoxCeleb-length utterances)."""

    global_crops: int = 2
    """Long views per utterance, seen by teacher and student."""
    global_seconds: float = 3.0
    """Length of a global view (s)."""
    local_crops: int = 4
    """Short views per utterance, seen by the student only (0 = none)."""
    local_seconds: float = 2.0
    """Length of a local view (s)."""
    corrupt: CorruptConfig | None = field(default_factory=CorruptConfig)
    """Noise and reverberation applied to every view independently; None = clean views."""
    pooling: Literal["mean", "attentive_stats"] = "mean"
    """Pooling of the encoder's last layer into one vector per view."""
    head_hidden_dim: int = 2048
    """Width of the projection MLP's two hidden layers."""
    bottleneck_dim: int = 256
    """Width of the L2-normalised bottleneck before the prototypes."""
    num_prototypes: int = 65536
    """Outputs K of the head (prototypes)."""
    student_temperature: float = 0.1
    """Softmax temperature of the student."""
    teacher_temperature: float = 0.04
    """Teacher temperature at step 0."""
    teacher_temperature_final: float = 0.07
    """Teacher temperature after the warm-up."""
    teacher_warmup_steps: int = 1000
    """Steps of the linear teacher-temperature warm-up."""
    center_momentum: float = 0.9
    """EMA factor of the centre of the teacher's logits."""
    momentum: float = 0.996
    """Teacher EMA momentum at step 0."""
    momentum_final: float = 1.0
    """Teacher EMA momentum at ``momentum_steps`` (cosine schedule)."""
    momentum_steps: int = 10000
    """Length of the momentum schedule: set it to ``run.max_steps``."""
    dino_weight: float = 1.0
    """Weight of the DINO loss (0 with ``cluster`` = classification only; the teacher then idles)."""
    cluster: ClusterConfig | None = None
    """Pseudo-speaker classification with loss-gate and label correction (cluster-aware iteration)."""

    def __post_init__(self) -> None:
        if self.global_crops < 1 or self.local_crops < 0:
            raise ConfigError("dino global_crops must be >= 1 and local_crops >= 0")
        if self.global_crops < 2 and self.local_crops < 1:
            raise ConfigError("dino needs two views to compare: global_crops >= 2 or local_crops >= 1")
        if self.global_seconds <= 0 or self.local_seconds <= 0:
            raise ConfigError("dino global_seconds and local_seconds must be > 0")
        if min(self.student_temperature, self.teacher_temperature, self.teacher_temperature_final) <= 0:
            raise ConfigError("dino temperatures must be > 0")
        if not (0 <= self.center_momentum < 1 and 0 <= self.momentum <= self.momentum_final <= 1):
            raise ConfigError("dino needs 0 <= center_momentum < 1 and 0 <= momentum <= momentum_final <= 1")
        if self.momentum_steps < 1 or self.teacher_warmup_steps < 0:
            raise ConfigError("dino momentum_steps must be >= 1 and teacher_warmup_steps >= 0")
        if self.dino_weight < 0 or (self.dino_weight == 0 and self.cluster is None):
            raise ConfigError("dino dino_weight must be > 0 (or 0 with a cluster section)")


# ----------------------------------------------------------------------------- pooling and head


# The poolings are audiossl.nn.pooling's (the one implementation); the DINO names stay importable.
MeanPooling = MeanPool


class AttentiveStatsPooling(AttentiveStatsPool):
    """Attentive statistics pooling (Okabe et al. 2018) with DINO's variance floor of 1e-6."""

    def __init__(self, dim: int, attention_dim: int = 128):
        super().__init__(dim, attention_dim, eps=1e-6)


class DinoHead(nn.Module):
    """MLP (3 layers, GELU) -> L2-normalised bottleneck -> cosine with K unit-norm prototypes (weight norm, g = 1)."""

    def __init__(self, input_dim: int, hidden_dim: int, bottleneck_dim: int, num_prototypes: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.prototypes = nn.Parameter(torch.randn(num_prototypes, bottleneck_dim) * bottleneck_dim**-0.5)  # (K, E)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, D_in) -> logits (N, K), each in [-1, 1]."""
        bottleneck = F.normalize(self.mlp(pooled).float(), dim=-1)  # (N, E)
        return bottleneck @ F.normalize(self.prototypes.float(), dim=-1).T  # (N, K)


# ----------------------------------------------------------------------------- loss pieces


def teacher_probabilities(logits: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """Centred and sharpened teacher distribution: softmax((logits - center) / temperature), (..., K)."""
    return ((logits.float() - center) / temperature).softmax(dim=-1)


def dino_loss(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over view pairs (teacher view g, student view v != g) of the batch-mean cross-entropy.

    ``student_logits`` (V, B, K) with the G global views first, ``teacher_probs`` (G, B, K).
    Returns (loss, per-pair cross-entropies (G, V) with the skipped pairs at 0).
    """
    log_student = (student_logits.float() / student_temperature).log_softmax(dim=-1)  # (V, B, K)
    cross = -torch.einsum("gbk,vbk->gv", teacher_probs, log_student) / student_logits.shape[1]  # (G, V)
    globals_, views = teacher_probs.shape[0], student_logits.shape[0]
    same = torch.eye(globals_, views, dtype=torch.bool, device=cross.device)
    cross = cross.masked_fill(same, 0.0)
    return cross.sum() / (globals_ * views - globals_), cross


def cosine_schedule(step: int, start: float, end: float, steps: int) -> float:
    """``start`` at step 0 to ``end`` at ``steps`` (and after), along half a cosine."""
    progress = min(max(step / steps, 0.0), 1.0)
    return end - (end - start) * 0.5 * (1.0 + math.cos(math.pi * progress))


def random_crops(
    waveforms: torch.Tensor, lengths: torch.Tensor, crop_samples: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One crop of up to ``crop_samples`` per utterance at a uniform random offset -> ((B, C), lengths (B,)).

    An utterance shorter than the crop is taken whole (its crop is padded with zeros).
    """
    lengths_cpu = lengths.cpu()
    crop_lengths = lengths_cpu.clamp(max=crop_samples)  # (B,)
    spare = (lengths_cpu - crop_lengths + 1).double()
    starts = (torch.rand(len(lengths_cpu), generator=generator, dtype=torch.float64) * spare).long()  # (B,)
    width = max(int(crop_lengths.max()), 1) if len(crop_lengths) else 1
    index = starts.unsqueeze(1) + torch.arange(width).unsqueeze(0)  # (B, C)
    valid = torch.arange(width).unsqueeze(0) < crop_lengths.unsqueeze(1)  # (B, C)
    index = index.clamp(max=max(waveforms.shape[1] - 1, 0)).to(waveforms.device)
    crops = waveforms.gather(1, index) * valid.to(waveforms.device)
    return crops, crop_lengths.to(lengths.device)


# ----------------------------------------------------------------------------- the objective


@dataclass
class DinoInputs:
    """DINO's inputs: the multi-crop views of a batch through the front-end, view-major."""

    global_features: torch.Tensor
    """(G * B, F, C) global views (G = ``global_crops``; view g of item b at row g * B + b)."""

    global_lengths: torch.Tensor
    """(G * B,) valid frames of the global views."""

    local_features: torch.Tensor | None = None
    """(L * B, F, C) local views, or None without local crops."""

    local_lengths: torch.Tensor | None = None
    """(L * B,) valid frames of the local views."""

    rows: torch.Tensor | None = None
    """(B,) rows of the utterances in the pseudo-speaker table (-1 unknown); None without ``cluster``."""


@register_objective("dino", DinoConfig, "DINO self-distillation of utterance embeddings (speakers); multi-crop")
class DinoObjective(Objective):
    """DINO on any encoder (see the module doc); ``forward`` takes the views made by :meth:`prepare_batch`."""

    inputs_type = DinoInputs
    target_heads = ("cluster.",)

    def __init__(self, encoder: Encoder, config: DinoConfig):
        super().__init__(encoder)
        self.config = config
        pool = AttentiveStatsPooling if config.pooling == "attentive_stats" else MeanPooling
        self.pooling = pool(encoder.dim)
        self.head = DinoHead(self.pooling.out_dim, config.head_hidden_dim, config.bottleneck_dim, config.num_prototypes)
        self.teacher = nn.ModuleDict(
            {
                "encoder": copy.deepcopy(encoder),
                "pooling": copy.deepcopy(self.pooling),
                "head": copy.deepcopy(self.head),
            }
        )
        self.teacher.requires_grad_(False)
        self.register_buffer("center", torch.zeros(config.num_prototypes))
        self.cluster: PseudoSpeakerHead | None = None
        if config.cluster is not None:
            self.cluster = PseudoSpeakerHead(
                config.cluster, self.pooling.out_dim, read_pseudo_labels(config.cluster.labels)
            )
        self._corruptors: dict[int, Corruptor] = {}

    # ------------------------------------------------------------------ set-up helpers

    def teacher_parameters(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(teacher, student) parameter pairs in a fixed order."""
        students = {"encoder": self.encoder, "pooling": self.pooling, "head": self.head}
        pairs = []
        for name, student in students.items():
            pairs += list(zip(self.teacher[name].parameters(), student.parameters(), strict=True))
        return pairs

    def teacher_temperature(self, step: int) -> float:
        """Linear warm-up of the teacher temperature, then constant."""
        config = self.config
        if step >= config.teacher_warmup_steps:
            return config.teacher_temperature_final
        fraction = step / max(config.teacher_warmup_steps, 1)
        return config.teacher_temperature + (config.teacher_temperature_final - config.teacher_temperature) * fraction

    def momentum_at(self, step: int) -> float:
        """Teacher EMA momentum for the update after optimizer step ``step`` (1-based count of finished steps)."""
        config = self.config
        return cosine_schedule(step - 1, config.momentum, config.momentum_final, config.momentum_steps)

    # ------------------------------------------------------------------ trainer hooks

    def prepare_batch(self, batch: Any, inputs: nn.Module, generator: torch.Generator | None = None) -> DinoInputs:
        """Multi-crop views of ``batch.waveforms``, each corrupted, through ``inputs`` (view-major order)."""
        config = self.config
        sample_rate = int(inputs.config.sample_rate)
        out: dict[str, Any] = {}
        sets = [
            ("global", config.global_crops, config.global_seconds),
            ("local", config.local_crops, config.local_seconds),
        ]
        for name, count, seconds in sets:
            if count == 0:
                continue
            crops = [
                random_crops(batch.waveforms, batch.lengths, round(seconds * sample_rate), generator)
                for _ in range(count)
            ]
            width = max(c.shape[1] for c, _ in crops)
            views = torch.cat([F.pad(c, (0, width - c.shape[1])) for c, _ in crops])  # (count * B, C)
            view_lengths = torch.cat([lengths for _, lengths in crops])  # (count * B,)
            if config.corrupt is not None:
                views = self._corruptor(sample_rate)(views, view_lengths, generator)
            out[f"{name}_features"], out[f"{name}_lengths"] = inputs(views, view_lengths, generator=generator)
        if self.cluster is not None:
            if "pseudo_speaker" not in batch.targets:
                raise ConfigError(
                    "dino with cluster reads the pseudo-speaker rows from batch.targets['pseudo_speaker']: the data "
                    "layer attaches them (objective.config.cluster.labels; audiossl.train.targets.attach_targets)"
                )
            out["rows"] = batch.targets["pseudo_speaker"]
        return DinoInputs(**out)

    def target_specs(self) -> dict[str, Any]:
        """``pseudo_speaker``: each utterance's row in the pseudo-label table (with ``cluster``)."""
        if self.cluster is None:
            return {}
        return {"pseudo_speaker": TableRowSpec(self.config.cluster.labels, "pseudo-label")}

    def _corruptor(self, sample_rate: int) -> Corruptor:
        if sample_rate not in self._corruptors:
            self._corruptors[sample_rate] = Corruptor(self.config.corrupt, sample_rate)
        return self._corruptors[sample_rate]

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """EMA update of the teacher: teacher = m * teacher + (1 - m) * student."""
        momentum = self.momentum_at(step)
        for teacher, student in self.teacher_parameters():
            teacher.mul_(momentum).add_((1.0 - momentum) * student.detach())
        if (
            self.cluster is not None
            and step > self.config.cluster.gate_after
            and step % self.config.cluster.gate_every == 0
        ):
            self.cluster.refit_gate()

    # ------------------------------------------------------------------ forward

    def embed(self, features: torch.Tensor, lengths: torch.Tensor, teacher: bool = False) -> torch.Tensor:
        """Pooled embeddings (N, D_pool) of the student (or teacher)."""
        encoder, pooling = (
            (self.teacher["encoder"], self.teacher["pooling"]) if teacher else (self.encoder, self.pooling)
        )
        output = encoder(features[:, : int(lengths.max())], lengths).without_prefix()
        return pooling(output.last, output.lengths)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """center = m * center + (1 - m) * batch mean of the teacher logits (N, K) (over all processes)."""
        total = teacher_logits.float().sum(dim=0)
        count = torch.tensor(float(teacher_logits.shape[0]), device=total.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
            torch.distributed.all_reduce(count)
        momentum = self.config.center_momentum
        self.center.mul_(momentum).add_(total / count, alpha=1.0 - momentum)

    def forward(
        self,
        global_features: torch.Tensor,
        global_lengths: torch.Tensor,
        local_features: torch.Tensor | None = None,
        local_lengths: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The DINO (and pseudo-speaker) loss of the views; ``generator`` is unused (views are cut in
        :meth:`prepare_batch`), accepted as every objective's forward is."""
        config = self.config
        step = step or 0
        globals_ = config.global_crops
        batch = global_features.shape[0] // globals_
        pooled = self.embed(global_features, global_lengths)  # (G * B, D_pool)
        pooled_local = None if local_features is None else self.embed(local_features, local_lengths)
        parts: dict[str, torch.Tensor] = {}
        values: dict[str, torch.Tensor | float] = {}
        total = pooled.new_zeros(())
        if config.dino_weight > 0:
            student = self.head(pooled if pooled_local is None else torch.cat([pooled, pooled_local]))  # (V * B, K)
            with torch.no_grad():
                teacher_logits = self.teacher["head"](self.embed(global_features, global_lengths, teacher=True))
            temperature = self.teacher_temperature(step)
            teacher = teacher_probabilities(teacher_logits, self.center, temperature).view(globals_, batch, -1)
            loss, cross = dino_loss(student.view(-1, batch, student.shape[-1]), teacher, config.student_temperature)
            entropy = -(teacher * teacher.clamp_min(1e-12).log()).sum(-1).mean()
            pairs = globals_ * (cross.shape[1] - 1)
            values.update(
                teacher_entropy=entropy,
                kl_teacher_student=(cross.detach().sum() - entropy * pairs) / pairs,
                center_norm=self.center.norm(),
                teacher_temperature=temperature,
            )
            if self.training:
                self.update_center(teacher_logits)
            parts["dino"] = loss
            total = total + config.dino_weight * loss
        if self.cluster is not None:
            classification, metrics = self.cluster(pooled.view(globals_, batch, -1), rows)
            values.update(metrics)
            gate = float(self.cluster.gate)
            values["gate"] = gate if gate < torch.finfo(torch.float64).max else -1.0  # -1: not fitted yet
            parts["classification"] = classification
            total = total + config.cluster.weight * classification
        return LossOutput(total=total, parts=parts, metrics=scalar_metrics(values))
