"""Speech translation: speech in one language -> text in another, an attention decoder over any upstream.

The model is the ASR plugin's seq2seq head (:class:`audiossl_asr.seq2seq.Seq2SeqHead`: an
autoregressive Transformer decoder cross-attending to the upstream's frames) trained on the
data dir's ``text.<lang>`` translations. Its CTC layer, when ``ctc_weight`` > 0, learns the
*source* transcript (``text``) as an auxiliary task (the multi-task ST recipe of ESPnet-ST,
Inaguma et al. 2020); translations are not monotonic in the speech, so decoding uses the
attention decoder alone (beam search with length normalisation). Scored by BLEU (sacrebleu).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.data.translation import SYNTH_LANGUAGE, read_translations
from audiossl.downstream.task import DownstreamTask, TaskState, check_labels, eval_batches
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write
from audiossl.nn.beam_search import BeamSearchConfig
from audiossl.nn.outputs import LossOutput
from audiossl_asr.seq2seq import Seq2SeqConfig, Seq2SeqHead, check_target_lengths, seq2seq_decode, seq2seq_loss
from audiossl_asr.task import write_hypotheses
from audiossl_asr.tokenizer import read_transcripts, train_tokenizer
from audiossl_speecht5.metrics import corpus_bleu
from audiossl_speecht5.tokens import tokenizer_from_json, tokenizer_to_json

logger = logging.getLogger(__name__)

#: In-memory state keys (never saved): tokenizers, and the translations of the dirs checked so far.
_TARGET, _SOURCE, _TRANSLATIONS = "_target", "_source", "_translations"


def hypothesis_file(lang: str) -> str:
    """Name of the translations ``evaluate`` writes: ``hyp.<lang>.txt`` (Kaldi text format)."""
    return f"hyp.{lang}.txt"


class STTask(DownstreamTask):
    """Speech translation into ``lang`` (the ``text.<lang>`` table) with an attention decoder."""

    name = "st"
    level = "frame"

    def __init__(self, lang: str = SYNTH_LANGUAGE, tokenizer: str = "char", vocab_size: int = 64, **seq2seq: Any):
        self.lang = lang
        self.tokenizer_kind = tokenizer
        self.vocab_size = vocab_size
        try:
            self.config = Seq2SeqConfig(**seq2seq)
        except TypeError as error:
            raise ConfigError(f"st options: {error}") from None
        #: The source transcript is read only for the auxiliary CTC loss.
        self.labels = ("text",) if self.config.ctc_weight > 0 else ()
        #: Search used by :meth:`evaluate`; None = beam 5, length penalty 1, no CTC.
        self.search: BeamSearchConfig | None = None

    def options(self) -> dict[str, Any]:
        return {"lang": self.lang, "tokenizer": self.tokenizer_kind, "vocab_size": self.vocab_size, **vars(self.config)}

    def prepare(self, train_dir: Path, out_dir: Path) -> TaskState:
        translations = read_translations(train_dir, self.lang)
        path = Path(train_dir) / f"text.{self.lang}"
        target = train_tokenizer(translations, self.tokenizer_kind, self.vocab_size, source=path)
        state: TaskState = {"lang": self.lang, "target": tokenizer_to_json(target), _TARGET: target}
        if self.config.ctc_weight > 0:
            text = Path(train_dir) / "text"
            source = train_tokenizer(read_transcripts(text), "char", source=text)
            state["source"] = tokenizer_to_json(source)
            state[_SOURCE] = source
        return state

    def save_state(self, state: TaskState, run_dir: Path) -> None:
        super().save_state({k: v for k, v in state.items() if not k.startswith("_")}, run_dir)

    def load_state(self, run_dir: Path) -> TaskState:
        state = super().load_state(run_dir)
        state[_TARGET] = tokenizer_from_json(state["target"])
        if "source" in state:
            state[_SOURCE] = tokenizer_from_json(state["source"])
        return state

    def check_data(self, data_dir: Path, state: TaskState) -> None:
        """Labels present; translations match wav.scp and fit the decoder; they are kept for the loss."""
        check_labels(data_dir, self.labels)
        translations = read_translations(data_dir, self.lang)
        target = state[_TARGET]
        units = {utt: target.encode(words) for utt, words in translations.items()}
        check_target_lengths(
            list(units), list(units.values()), self.config.max_length, Path(data_dir) / f"text.{self.lang}"
        )
        unknown = [utt for utt, ids in units.items() if target.unk in ids]
        if unknown:
            logger.warning("%s: %d translation(s) have unseen characters (e.g. %s)", data_dir, len(unknown), unknown[0])
        state.setdefault(_TRANSLATIONS, {}).update(translations)

    def make_head(self, dim: int, state: TaskState) -> nn.Module:
        source = state.get(_SOURCE)
        return Seq2SeqHead(
            dim,
            state[_TARGET].vocab_size + 1,
            self.config,
            ctc_vocab_size=None if source is None else source.vocab_size,
        )

    def loss(self, head: nn.Module, hidden: torch.Tensor, lengths: torch.Tensor, batch, state: TaskState) -> LossOutput:
        known = state.get(_TRANSLATIONS, {})
        missing = [utt for utt in batch.ids if utt not in known]
        if missing:
            raise DataError(f"no {self.lang!r} translation loaded for utterance(s) {missing[:3]} (check_data first)")
        targets = [state[_TARGET].encode(known[utt]) for utt in batch.ids]
        ctc_targets = None
        if self.config.ctc_weight > 0:
            ctc_targets = [state[_SOURCE].encode(text) for text in batch.labels["text"]]
        return seq2seq_loss(head, hidden, lengths, targets, batch.ids, blank=0, ctc_targets=ctc_targets)

    def evaluate(
        self, head: nn.Module, upstream: nn.Module, data_dir: Path, state: TaskState, out_dir: Path
    ) -> dict[str, float]:
        hypotheses = translate(head, upstream, data_dir, state, self.search)
        path = write_hypotheses(hypotheses, Path(out_dir) / hypothesis_file(self.lang))
        references = read_translations(data_dir, self.lang)
        result = corpus_bleu(references, hypotheses, Path(data_dir) / f"text.{self.lang}", path)
        with atomic_write(Path(out_dir) / "bleu.json") as handle:
            json.dump(result.as_dict(), handle, indent=2)
            handle.write("\n")
        return {k: v for k, v in result.as_dict().items() if not isinstance(v, str)}


@torch.no_grad()
def translate(
    head: Seq2SeqHead,
    upstream: nn.Module,
    data_dir: str | Path,
    state: TaskState,
    search: BeamSearchConfig | None = None,
    batch_seconds: float = 60.0,
) -> dict[str, str]:
    """Translation per utterance of ``data_dir`` (no labels needed), by attention beam search."""
    search = search or BeamSearchConfig(beam_size=5, ctc_weight=0.0, length_penalty=1.0)
    if search.ctc_weight > 0:
        raise ConfigError("speech translation decodes without CTC scores (its CTC learns the source): ctc_weight 0")
    target = state[_TARGET]
    hypotheses: dict[str, str] = {}
    for batch, hidden, lengths in eval_batches(upstream, data_dir, (), batch_seconds=batch_seconds):
        units = seq2seq_decode(head, hidden, lengths, search)
        hypotheses.update(zip(batch.ids, (target.decode(u) for u in units), strict=True))
    if not hypotheses:
        raise DataError("no utterances to translate", Path(data_dir) / "wav.scp")
    return hypotheses
