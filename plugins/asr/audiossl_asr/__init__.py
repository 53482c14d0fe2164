"""audiossl's ASR plugin: a CTC head over any upstream, tokenizers, greedy and beam-search decoding, WER and CER."""

from __future__ import annotations

from audiossl_asr.decoding import BeamSearchDecoder, BeamSearchOptions, greedy_decode
from audiossl_asr.head import CTCHead, CTCHeadConfig, check_alignable, ctc_loss
from audiossl_asr.metrics import ErrorRate, Score, char_error_rate, score_transcripts, word_error_rate
from audiossl_asr.tokenizer import Tokenizer, read_transcripts, train_tokenizer

__all__ = [
    "BeamSearchDecoder",
    "BeamSearchOptions",
    "CTCHead",
    "CTCHeadConfig",
    "ErrorRate",
    "Score",
    "Tokenizer",
    "char_error_rate",
    "check_alignable",
    "ctc_loss",
    "greedy_decode",
    "read_transcripts",
    "score_transcripts",
    "train_tokenizer",
    "word_error_rate",
]
