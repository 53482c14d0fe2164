"""audiossl's ASR plugin: a CTC head over any upstream, tokenizers, greedy and beam-search decoding, WER and CER.

Names are imported lazily (PEP 562): ``audiossl`` loads this package's plugin object at every
start-up, which must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> submodule defining it.
_EXPORTS = {
    "BeamSearchDecoder": "decoding",
    "BeamSearchOptions": "decoding",
    "greedy_decode": "decoding",
    "CTCHead": "head",
    "CTCHeadConfig": "head",
    "check_alignable": "head",
    "ctc_loss": "head",
    "ErrorRate": "metrics",
    "Score": "metrics",
    "char_error_rate": "metrics",
    "score_transcripts": "metrics",
    "word_error_rate": "metrics",
    "DecodeResult": "recognize",
    "decode_run": "recognize",
    "score_files": "recognize",
    "ASRTask": "task",
    "transcribe": "task",
    "read_hypotheses": "task",
    "write_hypotheses": "task",
    "Tokenizer": "tokenizer",
    "read_transcripts": "tokenizer",
    "train_tokenizer": "tokenizer",
}

__all__ = [
    "ASRTask",
    "BeamSearchDecoder",
    "BeamSearchOptions",
    "CTCHead",
    "CTCHeadConfig",
    "DecodeResult",
    "ErrorRate",
    "Score",
    "Tokenizer",
    "char_error_rate",
    "check_alignable",
    "ctc_loss",
    "decode_run",
    "greedy_decode",
    "read_hypotheses",
    "read_transcripts",
    "score_files",
    "score_transcripts",
    "train_tokenizer",
    "transcribe",
    "word_error_rate",
    "write_hypotheses",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from audiossl_asr.decoding import BeamSearchDecoder, BeamSearchOptions, greedy_decode
    from audiossl_asr.head import CTCHead, CTCHeadConfig, check_alignable, ctc_loss
    from audiossl_asr.metrics import ErrorRate, Score, char_error_rate, score_transcripts, word_error_rate
    from audiossl_asr.recognize import DecodeResult, decode_run, score_files
    from audiossl_asr.task import ASRTask, read_hypotheses, transcribe, write_hypotheses
    from audiossl_asr.tokenizer import Tokenizer, read_transcripts, train_tokenizer
