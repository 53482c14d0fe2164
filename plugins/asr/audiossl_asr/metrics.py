"""Word and character error rates: Levenshtein distance summed over a corpus, over the reference length.

WER counts word substitutions, deletions and insertions; CER does the same over characters,
the space between words included (the convention of jiwer and most toolkits). Both are corpus
rates (total edits / total reference units), not means of per-utterance rates, and can exceed
1 when the hypotheses insert many words. Whitespace is normalised (split and rejoined) first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torchaudio.functional

from audiossl.errors import DataError


@dataclass(frozen=True)
class ErrorRate:
    """Total edits over total reference units; ``rate`` is their quotient."""

    edits: int
    reference_units: int

    @property
    def rate(self) -> float:
        """Edits per reference unit (may exceed 1)."""
        return self.edits / self.reference_units if self.reference_units else float("nan")


def _words(text: str) -> list[str]:
    return text.split()


def _chars(text: str) -> list[str]:
    return list(" ".join(text.split()))


def _rate(references: list[str], hypotheses: list[str], units) -> ErrorRate:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = total = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        reference_units = units(reference)
        edits += torchaudio.functional.edit_distance(reference_units, units(hypothesis))
        total += len(reference_units)
    if total == 0:
        raise ValueError("the references are empty: an error rate needs at least one reference unit")
    return ErrorRate(edits, total)


def word_error_rate(references: list[str], hypotheses: list[str]) -> ErrorRate:
    """Corpus WER of hypotheses against references (same order)."""
    return _rate(references, hypotheses, _words)


def char_error_rate(references: list[str], hypotheses: list[str]) -> ErrorRate:
    """Corpus CER of hypotheses against references (same order), spaces counted as characters."""
    return _rate(references, hypotheses, _chars)


@dataclass(frozen=True)
class Score:
    """WER and CER of a set of hypotheses, with the counts behind them."""

    wer: ErrorRate
    cer: ErrorRate
    utterances: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "wer": self.wer.rate,
            "cer": self.cer.rate,
            "word_edits": self.wer.edits,
            "reference_words": self.wer.reference_units,
            "char_edits": self.cer.edits,
            "reference_chars": self.cer.reference_units,
            "utterances": self.utterances,
        }


def score_transcripts(
    references: Mapping[str, str],
    hypotheses: Mapping[str, str],
    references_path: str | Path | None = None,
    hypotheses_path: str | Path | None = None,
) -> Score:
    """WER and CER over every reference utterance; a missing hypothesis is an error, and so is a stray one.

    A hypothesis may be empty (every reference word deleted); paths only serve error messages.
    """
    missing = [utt for utt in references if utt not in hypotheses]
    if missing:
        raise DataError(
            f"{len(missing)} reference utterance(s) have no hypothesis, e.g. {missing[0]!r}", hypotheses_path
        )
    stray = [utt for utt in hypotheses if utt not in references]
    if stray:
        where = f" ({references_path})" if references_path is not None else ""
        raise DataError(
            f"{len(stray)} hypothesis utterance(s) are not in the references{where}, e.g. {stray[0]!r}",
            hypotheses_path,
            _line_of(hypotheses_path, stray[0]),
        )
    ids = list(references)
    refs = [references[utt] for utt in ids]
    hyps = [hypotheses[utt] for utt in ids]
    return Score(word_error_rate(refs, hyps), char_error_rate(refs, hyps), len(ids))


def _line_of(path: str | Path | None, key: str) -> int | None:
    """1-based line of ``key`` in a Kaldi table (looked up only to report an error)."""
    if path is None:
        return None
    try:
        for number, line in enumerate(Path(path).read_bytes().splitlines(), start=1):
            if line.split(maxsplit=1)[:1] == [key.encode("utf-8")]:
                return number
    except OSError:
        pass
    return None
