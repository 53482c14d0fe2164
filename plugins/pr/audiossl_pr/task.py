"""Phoneme recognition (SUPERB PR): the asr plugin's CTC head over phone transcripts, scored by PER.

The head, the CTC loss, frame stacking, SpecAugment and greedy decoding are the asr plugin's
(:mod:`audiossl_asr.head`, :mod:`audiossl_asr.decoding`); only the units differ: phones from
``text.phn`` or from ``text`` through a lexicon (:mod:`audiossl_pr.phones`) instead of
characters or word pieces. ``prepare`` keeps the phone inventory and the lexicon (when one is
used) in the run's state, so a test dir needs only ``text`` (lexicon runs) or ``text.phn``.
Held-out dev parts that the trainer cuts from the training dir carry neither ``text.phn`` nor
the lexicon file; their phones come from the training dir's transcripts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches
from audiossl.errors import DataError
from audiossl.fileio import atomic_write
from audiossl.nn.outputs import LossOutput
from audiossl_asr.decoding import greedy_decode
from audiossl_asr.head import CTCHead, CTCHeadConfig, ctc_loss
from audiossl_asr.task import head_config_of, resolve_stride
from audiossl_pr.metrics import score_phones
from audiossl_pr.phones import PHONES_FILE, PhoneSet, data_dir_phones, read_lexicon

logger = logging.getLogger(__name__)

#: Phone hypotheses written by evaluation (Kaldi ``text.phn`` format).
HYP_FILE = "hyp.phn"


class PRTask(DownstreamTask):
    """Phoneme recognition: phones from ``text.phn`` (or ``text`` + a lexicon), a CTC head, PER."""

    name = "pr"
    labels = ()  # phones are read by the task itself (text.phn is no AudioDataset label)
    level = "frame"
    dev_metric = "PER"
    dev_higher_is_better = False
    base_lr = 4.0e-3
    warmup_ratio = 0.1
    schedule = "cosine"

    def __init__(
        self,
        lexicon: str | None = None,
        head: str = "bilstm",
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        stride: int = 0,
        spec_augment: bool = True,
    ):
        #: A lexicon file mapping the words of ``text`` to phones (instead of the data dir's ``text.phn``).
        self.lexicon = None if lexicon is None else str(lexicon)
        self.stride = stride
        self.head_config = CTCHeadConfig(
            kind=head, hidden=hidden, layers=layers, dropout=dropout, stride=max(stride, 1), spec_augment=spec_augment
        )
        #: Phone transcripts of the dirs :meth:`check_data` saw, by utterance (what :meth:`loss` reads).
        self._phones: dict[str, list[str]] = {}

    def options(self) -> dict[str, Any]:
        config = self.head_config
        return {
            "lexicon": None if self.lexicon is None else str(Path(self.lexicon).resolve()),
            "head": config.kind,
            "hidden": config.hidden,
            "layers": config.layers,
            "dropout": config.dropout,
            "stride": self.stride,
            "spec_augment": config.spec_augment,
        }

    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        lexicon = read_lexicon(self.lexicon) if self.lexicon is not None else None
        phones, source = data_dir_phones(train_dir, lexicon, str(self.lexicon))
        if lexicon is None and not (Path(train_dir) / PHONES_FILE).is_file():
            lexicon = read_lexicon(Path(train_dir) / "lexicon.txt")  # the dir's own: kept for test dirs without it
        inventory = PhoneSet.from_transcripts(phones.values())
        if not inventory.phones:
            raise DataError("the training transcripts have no phones", train_dir)
        logger.info("%d phones from %s", len(inventory.phones), source)
        return {
            "phones": list(inventory.phones),
            "lexicon": lexicon,
            "source": source,
            "train_dir": str(Path(train_dir).resolve()),
            "head_stride": resolve_stride(self.stride, self),
        }

    def phones_of(self, data_dir: str | Path, state: TaskState) -> dict[str, list[str]]:
        """Phone transcripts of every utterance of ``data_dir`` (DataError naming what is missing)."""
        data_dir = Path(data_dir)
        data = check_labels(data_dir, ())
        lexicon = state.get("lexicon")
        if lexicon is not None and not (data_dir / "text").is_file() and (data_dir / PHONES_FILE).is_file():
            lexicon = None  # a lexicon run scored on a dir that has phones but no words
        try:
            table, _ = data_dir_phones(data_dir, lexicon, "the run's lexicon")
        except DataError:
            table = self._from_training_dir(data, state)
            if table is None:
                raise
        missing = [utt for utt in data.utterance_ids if utt not in table]
        if missing:
            where = data_dir / (PHONES_FILE if lexicon is None else "text")
            raise DataError(f"{len(missing)} utterance(s) have no phone transcript, e.g. {missing[0]!r}", where)
        return {utt: table[utt] for utt in data.utterance_ids}

    @staticmethod
    def _from_training_dir(data: DataDir, state: TaskState) -> dict[str, list[str]] | None:
        """A held-out part of the training dir: its utterances' phones from the training dir, else None."""
        source = state.get("train_dir")
        if source is None or not Path(source).is_dir():
            return None
        try:
            table, _ = data_dir_phones(source, state.get("lexicon"), "the run's lexicon")
        except DataError:
            return None
        return table if all(utt in table for utt in data.utterance_ids) else None

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Phones for every utterance; warn about phones the training data never had (they count as errors)."""
        phones = self.phones_of(data_dir, state)
        known = set(state["phones"])
        unseen = sorted({p for seq in phones.values() for p in seq} - known)
        if unseen:
            logger.warning("%s: phones never seen in training (they count as errors): %s", data_dir, " ".join(unseen))
        self._phones.update(phones)

    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        return CTCHead(dim, PhoneSet(tuple(state["phones"])).vocab_size, head_config_of(self.head_config, state))

    def loss(self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch, state: TaskState) -> LossOutput:
        inventory = PhoneSet(tuple(state["phones"]))
        missing = [utt for utt in batch.ids if utt not in self._phones]
        if missing:
            raise DataError(f"utterance {missing[0]!r} has no phone transcript (check_data never saw its data dir)")
        targets = [inventory.encode(self._phones[utt]) for utt in batch.ids]
        log_probs, frame_lengths = head(hidden, lengths)  # (B, S', V), (B,)
        total = ctc_loss(log_probs, frame_lengths, targets, batch.ids, blank=inventory.blank)
        units = sum(len(t) for t in targets)
        metrics = {"phones_per_frame": units / max(int(frame_lengths.sum()), 1)}
        return LossOutput(total=total, parts={"ctc": total.detach()}, metrics=metrics)

    def dev_metrics(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, batch_seconds: float = 60.0
    ) -> dict[str, float]:
        """Mean batch loss and the PER of greedy decoding on ``data_dir``."""
        references = self.phones_of(data_dir, state)
        self._phones.update(references)
        losses, hypotheses = [], {}
        for batch, hidden, lengths in eval_batches(upstream, data_dir, (), batch_seconds=batch_seconds):
            losses.append(float(self.loss(head, hidden, lengths, batch, state).total))
            hypotheses.update(recognise(head, hidden, lengths, batch.ids, state))
        score = score_phones(references, hypotheses)
        return {"loss": sum(losses) / max(len(losses), 1), "PER": score.per}

    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        references = self.phones_of(data_dir, state)
        hypotheses: dict[str, list[str]] = {}
        for batch, hidden, lengths in eval_batches(upstream, data_dir, ()):
            hypotheses.update(recognise(head, hidden, lengths, batch.ids, state))
        write_phones(hypotheses, Path(out_dir) / HYP_FILE)
        return score_phones(references, hypotheses, Path(data_dir) / PHONES_FILE).as_dict()


@torch.no_grad()
def recognise(
    head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, ids: Sequence[str], state: TaskState
) -> dict[str, list[str]]:
    """Greedy CTC phone hypotheses of one batch of frames (B, S, D) with lengths (B,)."""
    inventory = PhoneSet(tuple(state["phones"]))
    log_probs, frame_lengths = head(hidden, lengths)  # (B, S', V), (B,)
    best = greedy_decode(log_probs, frame_lengths, inventory.blank)
    return {utt: inventory.decode(units) for utt, units in zip(ids, best, strict=True)}


def write_phones(hypotheses: Mapping[str, Sequence[str]], path: str | Path) -> Path:
    """Write ``<utt> <phone> ...`` lines in Kaldi order, atomically (an empty hypothesis is just the id)."""
    with atomic_write(path) as handle:
        for utt in sorted(hypotheses, key=kaldi_sort_key):
            handle.write(" ".join([utt, *hypotheses[utt]]) + "\n")
    return Path(path)
