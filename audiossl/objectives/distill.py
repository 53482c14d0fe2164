"""``distill``: layer-to-layer distillation of a frozen teacher into a small student (DistilHuBERT, Chang et al. 2022).

* **teacher**: any pretrained model audiossl loads as a :class:`~audiossl.models.SpeechEncoder`
  (``objective.config.teacher``: an audiossl run dir or checkpoint, and, when the training room
  has installed its loader (:func:`set_teacher_loader`, done by :mod:`audiossl.train`), the
  formats of :func:`audiossl.load`: torchaudio, Hugging Face and fairseq2 checkpoints). It reads
  the batch's waveforms (resampled to its own rate), with its own front-end, in eval mode and
  without gradients. It is *not* a sub-module: not in the state dict (a run reloads it from the
  path), not in ``parameters()``, so never in the optimizer.
* **targets**: the teacher's blocks ``teacher_layers`` (1-based), each (B, S_t, D_t), aligned
  to the student's tokens by time: student token i (centre at ``(i + 0.5) / r_s`` s) takes the
  teacher frame ``floor((i + 0.5) * r_t / r_s)`` (clamped to the teacher's valid frames), so
  teacher and student may have different frame rates.
* **student**: the run's encoder (e.g. 2 blocks where the teacher has 12), with one linear
  prediction head per chosen teacher layer on its final output.
* **loss** (DistilHuBERT): per head, the mean over valid tokens of
  ``mean_d |pred - target| - cosine_weight * log sigmoid(cos(pred, target))``, summed over heads.

With ``init_from_teacher`` and a teacher of the same encoder family (an audiossl checkpoint),
the student starts from the teacher's weights where names and shapes match (its token maker
and first blocks), as DistilHuBERT initialises its student from HuBERT's first layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio.functional
from torch import nn

from audiossl.data.dataset import Batch
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.models import SpeechEncoder, load_pretrained
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import LossOutput, Objective, pipeline_features, register_objective, scalar_metrics
from audiossl.objectives.hubert import token_rate

#: Loads a teacher from a path; None = :func:`audiossl.models.load_pretrained` (audiossl checkpoints only).
_TEACHER_LOADER: Callable[[str], SpeechEncoder] | None = None


def set_teacher_loader(loader: Callable[[str], SpeechEncoder] | None) -> None:
    """Install the function that loads teachers from a path (the training room installs :func:`audiossl.load`)."""
    global _TEACHER_LOADER
    _TEACHER_LOADER = loader


def load_teacher(path: str) -> SpeechEncoder:
    """The frozen teacher at ``path``, in eval mode with no parameter requiring gradients."""
    if not Path(path).exists():
        raise ConfigError(f"distill teacher not found: {path} (objective.config.teacher)")
    model = (_TEACHER_LOADER or load_pretrained)(path)
    if not isinstance(model, SpeechEncoder):
        raise ConfigError(f"distill teacher {path} is not a speech encoder ({type(model).__name__})")
    model.requires_grad_(False)
    return model.eval()


@dataclass(kw_only=True)
class DistillConfig:
    """DistilHuBERT-style distillation (defaults: the paper's layers 4, 8 and 12 of a 12-block teacher)."""

    teacher: str | None = None
    """The teacher: an audiossl run dir or checkpoint, or an imported checkpoint audiossl.load reads; required."""

    teacher_layers: list[int] = field(default_factory=lambda: [4, 8, 12])
    """Teacher blocks (1-based) the student predicts, one prediction head each."""

    cosine_weight: float = 1.0
    """lambda: weight of the -log sigmoid(cosine) term against the L1 term (DistilHuBERT: 1)."""

    init_from_teacher: bool = True
    """Start the student from the teacher's weights where names and shapes match (same encoder family)."""

    def __post_init__(self) -> None:
        if not self.teacher_layers or min(self.teacher_layers) < 1:
            raise ConfigError(
                f"distill teacher_layers must be a non-empty list of blocks >= 1, got {self.teacher_layers}"
            )
        if len(set(self.teacher_layers)) != len(self.teacher_layers):
            raise ConfigError(f"distill teacher_layers repeat a block: {self.teacher_layers}")
        if self.cosine_weight < 0:
            raise ConfigError(f"distill cosine_weight must be >= 0, got {self.cosine_weight}")


@dataclass
class DistillInputs:
    """The student's features and the teacher's aligned targets."""

    features: torch.Tensor
    """(B, F, C) spectrogram frames or (B, T) waveforms for the student."""

    lengths: torch.Tensor
    """(B,) valid frames (samples)."""

    targets: torch.Tensor
    """(B, S, K, D_t) the K chosen teacher layers at every student token."""


def align_frames(teacher: torch.Tensor, teacher_lengths: torch.Tensor, tokens: int, ratio: float) -> torch.Tensor:
    """Teacher frames (B, S_t, ...) at ``tokens`` student positions, index floor((i + 0.5) * ratio) -> (B, S, ...).

    ``ratio`` = teacher frames per student token (r_t / r_s); indices are clamped to each item's
    last valid teacher frame.
    """
    positions = torch.floor((torch.arange(tokens, device=teacher.device, dtype=torch.float64) + 0.5) * ratio).long()
    last = (teacher_lengths.to(teacher.device).long() - 1).clamp(min=0).unsqueeze(1)  # (B, 1)
    index = torch.minimum(positions.unsqueeze(0), last)  # (B, S)
    shape = index.shape + (1,) * (teacher.dim() - 2)
    return teacher.gather(1, index.view(shape).expand(*index.shape, *teacher.shape[2:]))


def distill_loss(
    predictions: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, cosine_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DistilHuBERT's loss: ``predictions`` and ``targets`` (B, S, K, D), ``valid`` (B, S).

    Returns (total summed over the K heads, L1 per head (K,), mean cosine per head (K,)), each a
    mean over the valid tokens.
    """
    pred = predictions[valid].float()  # (N, K, D)
    true = targets[valid].float()
    if pred.shape[0] == 0:
        zero = predictions.sum() * 0.0
        heads = predictions.shape[2]
        return zero, torch.zeros(heads), torch.zeros(heads)
    l1 = (pred - true).abs().mean(dim=-1).mean(dim=0)  # (K,)
    cosine = F.cosine_similarity(pred, true, dim=-1)  # (N, K)
    total = (l1 - cosine_weight * F.logsigmoid(cosine).mean(dim=0)).sum()
    return total, l1, cosine.mean(dim=0)


class _Frozen:
    """Holds the teacher outside the module tree (no state dict, no parameters); copies share it."""

    def __init__(self, model: SpeechEncoder):
        self.model = model

    def __deepcopy__(self, memo: dict) -> _Frozen:
        return self


def initialise_from(student: Encoder, teacher: SpeechEncoder) -> list[str]:
    """Copy the teacher encoder's weights whose names and shapes match into ``student``; the names copied."""
    source = getattr(teacher, "encoder", None)
    if source is None or type(source) is not type(student):
        return []
    theirs = source.state_dict()
    copied = {
        name: theirs[name]
        for name, value in student.state_dict().items()
        if name in theirs and theirs[name].shape == value.shape
    }
    student.load_state_dict(copied, strict=False)
    return sorted(copied)


@register_objective("distill", DistillConfig, "DistilHuBERT: a small student predicts a frozen teacher's layers")
class DistillObjective(Objective):
    """Layer-to-layer distillation on any student encoder (see the module doc)."""

    inputs_type = DistillInputs

    def __init__(self, encoder: Encoder, config: DistillConfig):
        super().__init__(encoder)
        self.config = config
        if config.teacher is None:
            raise ConfigError("distill needs its teacher: set objective.config.teacher to a run dir or checkpoint")
        with torch.random.fork_rng():  # loading may seed torch; the heads draw from the run's seed
            teacher = load_teacher(config.teacher)
        if max(config.teacher_layers) > teacher.num_layers:
            raise ConfigError(
                f"distill teacher_layers {config.teacher_layers}: the teacher {config.teacher} has "
                f"{teacher.num_layers} blocks"
            )
        teacher_patches = int(getattr(getattr(teacher, "encoder", None), "freq_patches", 1))
        if encoder.freq_patches != 1 or teacher_patches != 1:
            raise ConfigError(
                "distill aligns teacher and student frames in time: both must have one token per time step "
                "(frame or waveform tokens, or patches spanning every frequency bin), not frequency patches"
            )
        self._teacher = _Frozen(teacher)
        self.teacher_dim = int(teacher.dim)
        self.heads = nn.ModuleList(nn.Linear(encoder.dim, self.teacher_dim) for _ in config.teacher_layers)
        self.initialised_from_teacher = initialise_from(encoder, teacher) if config.init_from_teacher else []
        self._rates: dict[int, float] = {}

    @property
    def teacher(self) -> SpeechEncoder:
        """The frozen teacher (not a sub-module)."""
        return self._teacher.model

    @torch.no_grad()
    def teacher_targets(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, sample_rate: int, tokens: int, student_rate: float
    ) -> torch.Tensor:
        """The chosen teacher layers at ``tokens`` student positions -> (B, S, K, D_t)."""
        teacher = self.teacher
        teacher.to(waveforms.device).eval()
        rate = int(teacher.sample_rate)
        waves, wave_lengths = waveforms.float(), lengths
        if rate != sample_rate:
            waves = torchaudio.functional.resample(waves, sample_rate, rate)
            wave_lengths = torch.ceil(lengths.double() * rate / sample_rate).long()
            waves = waves * lengths_to_mask(wave_lengths.to(waves.device), waves.shape[1])
        output = teacher(waves, wave_lengths).without_prefix()
        chosen = torch.stack([output.layers[k - 1] for k in self.config.teacher_layers], dim=2)  # (B, S_t, K, D_t)
        return align_frames(chosen.float(), output.lengths, tokens, float(teacher.frame_rate) / student_rate)

    def prepare_batch(self, batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None) -> DistillInputs:
        """Student features through the input pipeline; teacher targets from the waveforms."""
        features, lengths = pipeline_features(batch, inputs, generator)
        sample_rate = int(inputs.config.sample_rate)
        if sample_rate not in self._rates:
            self._rates[sample_rate] = token_rate(inputs, self.encoder, sample_rate)
        tokens = int(self.encoder.token_lengths(lengths).max())
        targets = self.teacher_targets(batch.waveforms, batch.lengths, sample_rate, tokens, self._rates[sample_rate])
        return DistillInputs(features, lengths, targets)

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The distillation loss of the student on ``features`` against ``targets`` (B, S, K, D_t); no masking."""
        longest = int(lengths.max())
        output = self.encoder(features[:, :longest], lengths).without_prefix()
        hidden = output.last  # (B, S, D)
        tokens = min(hidden.shape[1], targets.shape[1])
        hidden, targets = hidden[:, :tokens], targets[:, :tokens]
        predictions = torch.stack([head(hidden) for head in self.heads], dim=2)  # (B, S, K, D_t)
        valid = lengths_to_mask(output.lengths, tokens)  # (B, S)
        total, l1, cosine = distill_loss(predictions, targets, valid, self.config.cosine_weight)
        metrics: dict[str, Any] = {}
        for k, layer in enumerate(self.config.teacher_layers):
            metrics[f"cosine_layer{layer}"] = cosine[k]
            metrics[f"l1_layer{layer}"] = l1[k]
        parts = {"l1": l1.sum(), "cosine": (1.0 - cosine).sum()}
        return LossOutput(total=total, parts={k: v.detach() for k, v in parts.items()}, metrics=scalar_metrics(metrics))
