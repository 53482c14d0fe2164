"""Phone error rate (PER): Levenshtein distance of phone sequences summed over a corpus, over the reference phones.

As SUPERB's PR reports it: substitutions + deletions + insertions of whole phones (not
characters), a corpus rate (total edits / total reference phones) that may exceed 1. The
distance is the asr plugin's (torchaudio's ``edit_distance`` over token lists).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiossl.errors import DataError
from audiossl_asr.metrics import word_error_rate


@dataclass(frozen=True)
class PhoneScore:
    """PER and the counts behind it."""

    edits: int
    reference_phones: int
    utterances: int

    @property
    def per(self) -> float:
        return self.edits / self.reference_phones if self.reference_phones else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        """``PER`` (SUPERB's name, a fraction), ``per_percent`` and the counts."""
        return {
            "PER": self.per,
            "per_percent": 100.0 * self.per,
            "phone_edits": self.edits,
            "reference_phones": self.reference_phones,
            "utterances": self.utterances,
        }


def phone_error_rate(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]) -> PhoneScore:
    """Corpus PER of phone sequences (same order). Phones are whole tokens: ``sh`` is one phone."""
    if any(not phone or any(c.isspace() for c in phone) for seq in (*references, *hypotheses) for phone in seq):
        raise ValueError("a phone must be a non-empty token without whitespace")
    rate = word_error_rate([" ".join(r) for r in references], [" ".join(h) for h in hypotheses])
    return PhoneScore(rate.edits, rate.reference_units, len(references))


def score_phones(
    references: Mapping[str, Sequence[str]],
    hypotheses: Mapping[str, Sequence[str]],
    references_path: str | Path | None = None,
) -> PhoneScore:
    """PER of hypotheses keyed by utterance; every reference needs a hypothesis (an empty one is allowed)."""
    missing = [utt for utt in references if utt not in hypotheses]
    if missing:
        raise DataError(f"{len(missing)} utterance(s) have no hypothesis, e.g. {missing[0]!r}", references_path)
    ids = list(references)
    return phone_error_rate([references[u] for u in ids], [hypotheses[u] for u in ids])
