"""The speaker-verification downstream task: a speaker classifier trained with AAM-softmax, scored by cosine.

Training follows the usual speaker-embedding recipe on top of the upstream's layer mix: the
head (:class:`~audiossl_sv.head.SpeakerHead`) turns frames into an embedding, and an AAM-softmax
classifier over the training speakers teaches it to separate voices. Verification then throws
the classifier away: enrolment and test utterances of unseen speakers are embedded and compared
by cosine similarity (:mod:`audiossl_sv.evaluation`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.config import from_dict, to_dict
from audiossl.data.dataset import Batch
from audiossl.data.kaldi import DataDir
from audiossl.downstream.task import DownstreamTask, TaskState, label_file
from audiossl.errors import ConfigError, DataError
from audiossl.nn.outputs import LossOutput
from audiossl_sv.evaluation import embed_data_dir, evaluate_embeddings, norm_statistics
from audiossl_sv.head import AAMSoftmax, SpeakerHead, SpeakerHeadConfig, margin_at
from audiossl_sv.trials import check_verification_data, utt2spk_of

ScoreNorm = Literal["none", "mean", "asnorm", "mean+asnorm"]


@dataclass(kw_only=True)
class SVTaskConfig(SpeakerHeadConfig):
    """The speaker head and loss (see :class:`SpeakerHeadConfig`), and how evaluation scores trials."""

    trials: str | None = None
    """Trials file (``<label> <enroll> <test>``); None: ``DATA/trials`` when present, else generated."""
    num_trials: int | None = 20000
    """Size of a generated trial list (balanced target / non-target); None: every target pair."""
    trials_seed: int = 0
    """Seed of a generated trial list."""
    score_norm: ScoreNorm = "none"
    """Score post-processing: subtract the training-set mean embedding, AS-norm with a training cohort, or both."""
    cohort_size: int = 2000
    """Training utterances (drawn with ``trials_seed``) forming the AS-norm cohort and the mean."""
    top_n: int = 300
    """AS-norm: the closest cohort embeddings used for each side's statistics."""

    def __post_init__(self) -> None:
        if self.score_norm not in ("none", "mean", "asnorm", "mean+asnorm"):
            raise ConfigError(f"score_norm must be none, mean, asnorm or mean+asnorm, got {self.score_norm!r}")
        if self.embedding_dim < 1 or self.top_n < 1 or self.cohort_size < 1 or self.hidden_dim < 0:
            raise ConfigError("embedding_dim, top_n and cohort_size must be >= 1, hidden_dim >= 0")
        if self.margin < 0 or self.scale <= 0 or self.margin_warmup_steps < 0:
            raise ConfigError("margin and margin_warmup_steps must be >= 0, scale > 0")


class SVHead(nn.Module):
    """Speaker head + AAM-softmax classifier; counts its training steps for the margin warm-up.

    ``steps`` is a buffer, so it is saved in checkpoints and a resumed run continues the warm-up
    where it stopped. ``embed`` gives the speaker embeddings (B, E) that verification scores.
    """

    def __init__(self, dim: int, num_speakers: int, config: SVTaskConfig):
        super().__init__()
        self.config = config
        self.speaker = SpeakerHead(dim, config)
        self.classifier = AAMSoftmax(config.embedding_dim, num_speakers, config.scale, config.margin)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def embed(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Speaker embeddings (B, E) of frames (B, S, D) with lengths (B,)."""
        return self.speaker(hidden, lengths)

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.embed(hidden, lengths)

    @property
    def margin(self) -> float:
        """The AAM margin of the current step."""
        return margin_at(int(self.steps), self.config.margin, self.config.margin_warmup_steps)


class SVTask(DownstreamTask):
    """Speaker verification: labels ``spk``; metrics ``eer_percent`` and ``min_dcf_0.01`` / ``min_dcf_0.05``."""

    name = "sv"
    labels = ("spk",)
    level = "utterance"

    def __init__(self, config: SVTaskConfig | None = None, **options: Any):
        if config is not None and options:
            raise TypeError("give either a config or keyword options, not both")
        self.config = config if config is not None else from_dict(SVTaskConfig, options)

    def options(self) -> dict[str, Any]:
        return to_dict(self.config)

    def with_options(self, **changes: Any) -> SVTask:
        """The same task with some options changed (evaluation-time choices such as trials or score_norm)."""
        return SVTask(dataclasses.replace(self.config, **changes))

    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        utt2spk = utt2spk_of(DataDir.load(train_dir))
        speakers = sorted(set(utt2spk.values()))
        if len(speakers) < 2:
            raise DataError(
                f"training a speaker classifier needs at least 2 speakers, found {len(speakers)}",
                label_file(train_dir, "spk"),
            )
        return {"speakers": speakers, "train_dir": str(Path(train_dir).resolve())}

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Speaker labels must exist (evaluation speakers may be new: verification is open-set)."""
        check_verification_data(data_dir, self.config.trials)

    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        return SVHead(dim, len(state["speakers"]), self.config)

    def loss(
        self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch: Batch, state: TaskState
    ) -> LossOutput:
        index = {speaker: i for i, speaker in enumerate(state["speakers"])}
        unknown = sorted({s for s in batch.labels["spk"] if s not in index})
        if unknown:
            raise DataError(
                f"speaker {unknown[0]!r} was not among the training speakers: a validation set for sv must "
                "hold other utterances of the training speakers"
            )
        targets = torch.tensor([index[s] for s in batch.labels["spk"]], device=hidden.device)  # (B,)
        embeddings = head.embed(hidden, lengths)  # (B, E)
        margin = head.margin
        logits = head.classifier.logits(embeddings, targets, margin)  # (B, C)
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            plain = head.classifier.logits(embeddings, targets, 0.0)
            accuracy = float((plain.argmax(dim=-1) == targets).float().mean())
        if head.training:
            head.steps += 1
        return LossOutput(total=loss, parts={"aam": loss.detach()}, metrics={"accuracy": accuracy, "margin": margin})

    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        embeddings = embed_data_dir(upstream, data_dir, head=head)
        mean, cohort = norm_statistics(self.config, upstream, state.get("train_dir"), head=head)
        return evaluate_embeddings(embeddings, data_dir, out_dir, self.config, mean=mean, cohort=cohort)


def create_task(**options: Any) -> SVTask:
    """The plugin's task factory: :class:`SVTask` from saved options (defaults without any)."""
    return SVTask(**options)
