"""The contract every downstream task implements, and helpers tasks share.

A task is told nothing about encoders: the trainer hands it hidden states (B, S, D) with
their lengths (pyannote's ``Task`` drives a ``Model`` the same way). It provides:

* ``name``, ``labels`` (tables read from a data dir) and ``level`` (``utterance`` or ``frame``);
* :meth:`DownstreamTask.prepare`: label encoders from the training data (class lists,
  tokenizers), returned as a JSON-able *state* and saved in the run dir;
* :meth:`DownstreamTask.check_data`: validation of other data (valid, test) against that state;
* :meth:`DownstreamTask.make_head`, :meth:`DownstreamTask.loss`: the trainable head and its loss;
* :meth:`DownstreamTask.evaluate`: metrics (and plots, reports) on a data dir;
* :meth:`DownstreamTask.options`: the constructor arguments, saved with the run so evaluation
  rebuilds the same task.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from audiossl.data.dataset import AudioDataset, Batch, collate
from audiossl.data.kaldi import DataDir
from audiossl.data.sampler import BucketBatchSampler
from audiossl.errors import DataError
from audiossl.fileio import atomic_write
from audiossl.nn.outputs import LossOutput

#: File in the run dir holding the task state returned by ``prepare``.
STATE_FILE = "task_state.json"

TaskState = dict[str, Any]


class DownstreamTask(ABC):
    """Base class of downstream tasks (see the module docstring for the contract)."""

    #: Plugin name (the command group).
    name: ClassVar[str] = ""
    #: Label tables the task reads (AudioDataset label names: "emo" for utt2emo, "spk", "text").
    labels: ClassVar[tuple[str, ...]] = ()
    #: "utterance": one target per utterance (crops are allowed); "frame": targets along time.
    level: ClassVar[Literal["utterance", "frame"]] = "utterance"
    #: Label whose classes the held-out (dev) part is stratified by ("spk" = utt2spk); None = a random draw.
    stratify_label: ClassVar[str | None] = None
    #: The dev metric that early stopping and the lr sweep select on (a key of :meth:`dev_metrics`).
    dev_metric: ClassVar[str] = "loss"
    #: Whether a larger :attr:`dev_metric` is better (accuracy) or a smaller one (loss, error rates).
    dev_higher_is_better: ClassVar[bool] = False
    #: Peak learning rate of the head at 32 utterances per batch (scaled by the data-size rule of the trainer).
    base_lr: ClassVar[float] = 1.0e-3
    #: Warm-up as a share of ``max_steps`` and the lr schedule used when the config leaves them at None.
    warmup_ratio: ClassVar[float] = 0.0
    schedule: ClassVar[Literal["constant", "linear", "cosine"]] = "constant"
    #: The upstream's dim, num_layers, frame_rate and sample_rate: set by the trainer before ``prepare``/``make_head``.
    upstream_info: dict[str, Any] | None = None
    #: True when the head is solved in closed form (:meth:`fit_closed_form`) instead of trained by SGD.
    closed_form: bool = False

    def fit_closed_form(
        self, upstream: nn.Module, train_dir: Path, dev_dir: Path | None, run_dir: Path, state: TaskState
    ) -> nn.Module:
        """The head of a :attr:`closed_form` task, fitted on ``train_dir`` (selected on ``dev_dir``)."""
        raise NotImplementedError(f"task {self.name!r} has no closed-form head")

    def options(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-able) that rebuild this task; saved with every run."""
        return {}

    @abstractmethod
    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        """Build the label encoders from the training data; may write extra files into ``out_dir``."""

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Raise :class:`DataError` (naming the file) when ``data_dir`` does not fit ``state``.

        The default checks that every label table exists and covers every utterance; tasks
        add their own checks (classes never seen in training, unknown tokens).
        """
        check_labels(data_dir, self.labels)

    @abstractmethod
    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        """The trainable head reading hidden states of width ``dim``."""

    @abstractmethod
    def loss(
        self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch: Batch, state: TaskState
    ) -> LossOutput:
        """Loss of one batch: ``hidden`` (B, S, D) with ``lengths`` (B,), labels in ``batch.labels``."""

    @abstractmethod
    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        """Metrics on ``data_dir`` (head and upstream in eval mode); reports and plots go to ``out_dir``."""

    def dev_metrics(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, batch_seconds: float = 60.0
    ) -> dict[str, float]:
        """Metrics of the held-out data for model selection (eval mode, no gradients): ``loss`` and :attr:`dev_metric`.

        The default is the mean batch loss; tasks with a better yardstick (accuracy, error rates) override it.
        """
        losses = []
        with torch.no_grad():
            for batch, hidden, lengths in eval_batches(upstream, data_dir, self.labels, batch_seconds=batch_seconds):
                losses.append(float(self.loss(head, hidden, lengths, batch.to(hidden.device), state).total))
        return {"loss": sum(losses) / max(len(losses), 1)}

    def after_training(  # noqa: B027  (an optional hook)
        self, upstream: nn.Module, train_dir: Path, dev_dir: Path | None, run_dir: Path, state: TaskState
    ) -> None:
        """Called once a run finished training (main process only), e.g. to fit a reference probe into ``run_dir``."""

    def save_state(self, state: TaskState, run_dir: Path) -> None:
        """Write the state into the run dir (default: JSON in :data:`STATE_FILE`)."""
        with atomic_write(Path(run_dir) / STATE_FILE) as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.write("\n")

    def load_state(self, run_dir: Path) -> TaskState:
        """Read what :meth:`save_state` wrote (override to attach objects such as tokenizers)."""
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise DataError("task state not found (is this a downstream run dir?)", path)
        return json.loads(path.read_text(encoding="utf-8"))


def check_labels(data_dir: str | Path, labels: Sequence[str]) -> DataDir:
    """Load ``data_dir`` and check every label table exists and covers every utterance (DataError naming the file)."""
    data = DataDir.load(data_dir)
    if not data.utterance_ids:
        raise DataError("data dir has no utterances (wav.scp is empty)", Path(data_dir) / "wav.scp")
    AudioDataset(data, labels=labels)  # raises DataError naming the missing or incomplete table
    return data


def label_file(data_dir: str | Path, label: str) -> Path:
    """The file behind label ``label`` of a data dir: utt2spk, text or utt2<label>."""
    name = {"spk": "utt2spk", "text": "text"}.get(label, f"utt2{label}")
    return Path(data_dir) / name


def eval_batches(
    upstream: nn.Module,
    data_dir: str | Path,
    labels: Sequence[str],
    *,
    batch_seconds: float = 60.0,
) -> Iterator[tuple[Batch, torch.Tensor, torch.Tensor]]:
    """Every utterance of ``data_dir`` once, in length-sorted batches: (batch, hidden (B, S, D), lengths (B,)).

    Runs the upstream without gradients at its sample rate and on its device; whole
    utterances (no crops). For tasks' :meth:`DownstreamTask.evaluate`.
    """
    dataset = AudioDataset(data_dir, sample_rate=upstream.sample_rate, labels=labels)
    sampler = BucketBatchSampler(dataset.durations, batch_seconds, num_buckets=1, shuffle=False)
    with torch.no_grad():
        for indices in sampler:
            batch = collate(dataset[indices])
            hidden, lengths = upstream(batch.waveforms, batch.lengths)
            yield batch, hidden, lengths
