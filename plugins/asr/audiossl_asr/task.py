"""The ASR downstream task: a CTC head, or an attention decoder with joint CTC, over the upstream's frames.

``prepare`` learns the tokenizer from the training transcripts (characters, or a
sentencepiece unigram/BPE model) and saves it in the run dir. ``model="ctc"``: ``loss`` is CTC
on the head's log-probabilities; ``evaluate`` decodes greedily, or by beam search when
:attr:`ASRTask.beam` is set. ``model="seq2seq"`` (:mod:`audiossl_asr.seq2seq`): the hybrid
CTC/attention loss, and beam search with CTC prefix scores and length normalisation
(:attr:`ASRTask.search`). Hypotheses are written as a Kaldi ``text`` file and scored (WER, CER).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.data.kaldi import kaldi_sort_key, read_table
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write
from audiossl.nn.beam_search import BeamSearchConfig
from audiossl.nn.outputs import LossOutput
from audiossl_asr.decoding import BeamSearchDecoder, BeamSearchOptions, greedy_decode
from audiossl_asr.head import CTCHead, CTCHeadConfig, auto_stride, ctc_loss
from audiossl_asr.metrics import Score, score_transcripts
from audiossl_asr.seq2seq import Seq2SeqConfig, Seq2SeqHead, check_target_lengths, seq2seq_decode, seq2seq_loss
from audiossl_asr.tokenizer import Tokenizer, read_transcripts, train_tokenizer

logger = logging.getLogger(__name__)

#: Hypotheses written by evaluation and ``audiossl asr decode`` (Kaldi ``text`` format).
HYP_FILE = "hyp.txt"
#: Key of the in-memory tokenizer in a task state (never saved: the state's JSON rebuilds it).
_TOKENIZER = "_tokenizer"
MODELS = ("ctc", "seq2seq")


class ASRTask(DownstreamTask):
    """Speech recognition: tokenizer, model (CTC head or attention decoder + CTC) and head options.

    Decoding is chosen at evaluation time: :attr:`beam` (CTC heads) or :attr:`search` (seq2seq).
    """

    name = "asr"
    labels = ("text",)
    level = "frame"
    #: Model selection (early stopping, lr sweep) on the dev character error rate of greedy decoding.
    dev_metric = "cer"
    dev_higher_is_better = False
    #: Peak lr at 32 utterances per batch (the trainer scales it with the batch), reached after a 10% warm-up,
    #: then a cosine decay: a CTC head at a constant peak lr from step 0 often locks into all-blank output.
    base_lr = 4.0e-3
    warmup_ratio = 0.1
    schedule = "cosine"

    def __init__(
        self,
        tokenizer: str = "char",
        vocab_size: int = 64,
        head: str = "bilstm",
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        model: str = "ctc",
        stride: int = 0,
        spec_augment: bool = True,
        **seq2seq: Any,
    ):
        if model not in MODELS:
            raise ConfigError(f"unknown ASR model {model!r}; choose one of {', '.join(MODELS)}")
        if seq2seq and model != "seq2seq":
            raise ConfigError(f"options {', '.join(sorted(seq2seq))} are for --model seq2seq")
        self.tokenizer_kind = tokenizer
        self.vocab_size = vocab_size
        self.model = model
        if stride < 0:
            raise ConfigError(f"stride must be >= 0 (0: from the upstream's frame rate), got {stride}")
        #: Frames the CTC head stacks; 0 = chosen in :meth:`prepare` from the upstream's frame rate.
        self.stride = stride
        self.head_config = CTCHeadConfig(
            kind=head, hidden=hidden, layers=layers, dropout=dropout, stride=max(stride, 1), spec_augment=spec_augment
        )
        try:
            self.seq2seq_config = Seq2SeqConfig(dropout=dropout, **seq2seq) if model == "seq2seq" else None
        except TypeError as error:
            raise ConfigError(f"seq2seq options: {error}") from None
        #: Beam-search options for :meth:`evaluate` of a CTC head; None decodes greedily. Not a training option.
        self.beam: BeamSearchOptions | None = None
        #: Search of :meth:`evaluate` for seq2seq; None = beam 10 with the training ctc_weight, length penalty 1.
        self.search: BeamSearchConfig | None = None

    def options(self) -> dict[str, Any]:
        config = self.head_config
        options: dict[str, Any] = {
            "tokenizer": self.tokenizer_kind,
            "vocab_size": self.vocab_size,
            "head": config.kind,
            "hidden": config.hidden,
            "layers": config.layers,
            "dropout": config.dropout,
            "stride": self.stride,
            "spec_augment": config.spec_augment,
        }
        if self.seq2seq_config is not None:  # CTC runs keep the options they always had (resume compares them)
            options["model"] = self.model
            options.update({k: v for k, v in vars(self.seq2seq_config).items() if k != "dropout"})
        return options

    def default_search(self) -> BeamSearchConfig:
        """The seq2seq search :meth:`evaluate` uses unless :attr:`search` is set."""
        return BeamSearchConfig(beam_size=10, ctc_weight=self.seq2seq_config.ctc_weight, length_penalty=1.0)

    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        text = Path(train_dir) / "text"
        tokenizer = train_tokenizer(read_transcripts(text), self.tokenizer_kind, self.vocab_size, source=text)
        tokenizer.save(out_dir)
        state = _state(tokenizer)
        state["head_stride"] = resolve_stride(self.stride, self)
        return state

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Labels present, no empty transcript (DataError at its line); warn about units the tokenizer lacks."""
        check_labels(data_dir, self.labels)
        text = Path(data_dir) / "text"
        tokenizer = tokenizer_of(state)
        transcripts = read_transcripts(text)
        if self.seq2seq_config is not None:
            units = {utt: tokenizer.encode(words) for utt, words in transcripts.items()}
            check_target_lengths(list(units), list(units.values()), self.seq2seq_config.max_length, text)
        unknown = [utt for utt, words in transcripts.items() if tokenizer.unk in tokenizer.encode(words)]
        if unknown:
            logger.warning(
                "%s: %d transcript(s) have characters never seen in training (e.g. %s); they count as errors",
                text,
                len(unknown),
                unknown[0],
            )

    def save_state(self, state: TaskState, run_dir: Path) -> None:
        super().save_state({k: v for k, v in state.items() if not k.startswith("_")}, run_dir)

    def load_state(self, run_dir: Path) -> TaskState:
        state = super().load_state(run_dir)
        state[_TOKENIZER] = _tokenizer_from_state(state)
        return state

    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        if self.seq2seq_config is not None:  # the tokenizer's units plus <sos/eos>
            return Seq2SeqHead(dim, tokenizer_of(state).vocab_size + 1, self.seq2seq_config)
        return CTCHead(dim, tokenizer_of(state).vocab_size, head_config_of(self.head_config, state))

    def loss(self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch, state: TaskState) -> LossOutput:
        tokenizer = tokenizer_of(state)
        if self.seq2seq_config is not None:
            targets = [tokenizer.encode(text) for text in batch.labels["text"]]
            return seq2seq_loss(head, hidden, lengths, targets, batch.ids, blank=tokenizer.blank)
        log_probs, frame_lengths = head(hidden, lengths)  # (B, S, V), (B,)
        targets = [tokenizer.encode(text) for text in batch.labels["text"]]
        total = ctc_loss(log_probs, frame_lengths, targets, batch.ids, blank=tokenizer.blank)
        units = sum(len(t) for t in targets)
        metrics = {"units_per_frame": units / max(int(frame_lengths.sum()), 1)}
        return LossOutput(total=total, parts={"ctc": total.detach()}, metrics=metrics)

    def dev_metrics(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, batch_seconds: float = 60.0
    ) -> dict[str, float]:
        """Mean batch loss and the corpus CER / WER of greedy decoding (seq2seq: its default search) on ``data_dir``."""
        return decode_dev(self, head, upstream, data_dir, state, batch_seconds)

    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        search = None
        if self.seq2seq_config is not None:
            search = self.search or self.default_search()
        hypotheses = transcribe(head, upstream, data_dir, tokenizer_of(state), self.beam, search=search)
        write_hypotheses(hypotheses, Path(out_dir) / HYP_FILE)
        text = Path(data_dir) / "text"
        score = score_transcripts(read_transcripts(text), hypotheses, text, Path(out_dir) / HYP_FILE)
        return score.as_dict()


@torch.no_grad()
def decode_dev(
    task: ASRTask, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, batch_seconds: float
) -> dict[str, float]:
    """``loss``, ``cer`` and ``wer`` of ``data_dir`` in one pass (greedy CTC decoding, or seq2seq beam search)."""
    tokenizer = tokenizer_of(state)
    losses, hypotheses, references = [], {}, {}
    search = task.default_search() if task.seq2seq_config is not None else None
    for batch, hidden, lengths in eval_batches(upstream, data_dir, task.labels, batch_seconds=batch_seconds):
        losses.append(float(task.loss(head, hidden, lengths, batch.to(hidden.device), state).total))
        if search is not None:
            units = seq2seq_decode(head, hidden, lengths, search, blank=tokenizer.blank)
        else:
            log_probs, frame_lengths = head(hidden, lengths)  # (B, S', V), (B,)
            units = greedy_decode(log_probs, frame_lengths, tokenizer.blank)
        hypotheses.update(zip(batch.ids, (tokenizer.decode(u) for u in units), strict=True))
        references.update(zip(batch.ids, batch.labels["text"], strict=True))
    score = score_transcripts(references, hypotheses)
    return {"loss": sum(losses) / max(len(losses), 1), "cer": score.cer.rate, "wer": score.wer.rate}


def resolve_stride(stride: int, task: DownstreamTask) -> int:
    """The head's frame stacking: ``stride``, or for 0 :func:`auto_stride` of the upstream's frame rate.

    The trainer tells the task its upstream (``task.upstream_info``) before ``prepare``; without it
    (an older trainer) nothing is stacked.
    """
    if stride > 0:
        return stride
    info = getattr(task, "upstream_info", None) or {}
    chosen = auto_stride(info.get("frame_rate"))
    logger.info("CTC head stacks %d frame(s) (upstream at %s frames/s)", chosen, info.get("frame_rate", "unknown"))
    return chosen


def head_config_of(config: CTCHeadConfig, state: TaskState) -> CTCHeadConfig:
    """The head config with the frame stacking the run chose (saved in its state)."""
    return dataclasses.replace(config, stride=int(state.get("head_stride", config.stride)))


def tokenizer_of(state: TaskState) -> Tokenizer:
    """The tokenizer of a task state (built from its JSON once, then kept in the state)."""
    if _TOKENIZER not in state:
        state[_TOKENIZER] = _tokenizer_from_state(state)
    return state[_TOKENIZER]


def _state(tokenizer: Tokenizer) -> TaskState:
    state: TaskState = {"tokenizer": tokenizer.kind, "vocab_size": tokenizer.vocab_size}
    if tokenizer.kind == "char":
        state["units"] = tokenizer.units
    else:
        state["sentencepiece_model"] = base64.b64encode(tokenizer.model_proto).decode("ascii")
    state[_TOKENIZER] = tokenizer
    return state


def _tokenizer_from_state(state: Mapping[str, Any]) -> Tokenizer:
    if state["tokenizer"] == "char":
        return Tokenizer("char", units=list(state["units"]))
    return Tokenizer(state["tokenizer"], model_proto=base64.b64decode(state["sentencepiece_model"]))


@torch.no_grad()
def transcribe(
    head: nn.Module,
    upstream: nn.Module,
    data_dir: str | Path,
    tokenizer: Tokenizer,
    beam: BeamSearchOptions | None = None,
    batch_seconds: float = 60.0,
    search: BeamSearchConfig | None = None,
) -> dict[str, str]:
    """Hypothesis per utterance of ``data_dir`` (no labels needed).

    A CTC head decodes greedily, or by beam search with ``beam``; a :class:`Seq2SeqHead` by
    ``search`` (default: beam 10, CTC weight 0.3 when the head has CTC, length penalty 1).
    """
    if isinstance(head, Seq2SeqHead):
        if search is None:
            search = BeamSearchConfig(beam_size=10, ctc_weight=0.3 if head.shares_ctc_vocabulary else 0.0)
        hypotheses = {}
        for batch, hidden, lengths in eval_batches(upstream, data_dir, (), batch_seconds=batch_seconds):
            units = seq2seq_decode(head, hidden, lengths, search, blank=tokenizer.blank)
            hypotheses.update(zip(batch.ids, (tokenizer.decode(u) for u in units), strict=True))
        if not hypotheses:
            raise DataError("no utterances to decode", Path(data_dir) / "wav.scp")
        return hypotheses
    decoder = BeamSearchDecoder(tokenizer, beam) if beam is not None else None
    hypotheses: dict[str, str] = {}
    for batch, hidden, lengths in eval_batches(upstream, data_dir, (), batch_seconds=batch_seconds):
        log_probs, frame_lengths = head(hidden, lengths)  # (B, S, V), (B,)
        if decoder is None:
            texts = [tokenizer.decode(units) for units in greedy_decode(log_probs, frame_lengths, tokenizer.blank)]
        else:
            texts = decoder(log_probs, frame_lengths)
        hypotheses.update(zip(batch.ids, texts, strict=True))
    if not hypotheses:
        raise DataError("no utterances to decode", Path(data_dir) / "wav.scp")
    return hypotheses


def write_hypotheses(hypotheses: Mapping[str, str], path: str | Path) -> Path:
    """Write ``<utt> <words>`` lines in Kaldi order, atomically (an empty hypothesis is just the id)."""
    with atomic_write(path) as handle:
        for utt in sorted(hypotheses, key=kaldi_sort_key):
            handle.write(f"{utt} {' '.join(hypotheses[utt].split())}".rstrip() + "\n")
    return Path(path)


def read_hypotheses(path: str | Path) -> dict[str, str]:
    """Read a hypothesis file in Kaldi ``text`` format; empty hypotheses are allowed."""
    return {utt: " ".join(text.split()) for utt, text in read_table(path, allow_empty_value=True).items()}


def write_score(score: Score, path: str | Path, **context: Any) -> Path:
    """Write WER/CER and their counts (plus ``context``) as JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump({**context, "metrics": score.as_dict()}, handle, indent=2)
        handle.write("\n")
    return Path(path)
