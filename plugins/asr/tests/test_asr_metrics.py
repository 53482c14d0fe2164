"""WER and CER against jiwer, and hand-computed cases."""

from __future__ import annotations

import jiwer
import pytest

from audiossl.errors import DataError
from audiossl_asr.metrics import char_error_rate, score_transcripts, word_error_rate

REFERENCES = ["the cat sat on the mat", "hello world", "a b c d", "one", "sun moon tea"]
HYPOTHESES = ["the cat sit on mat", "", "a x b c d e", "one two three", "sun  moon tea"]


def test_hand_computed_wer():
    rate = word_error_rate(["a b c"], ["a c d e"])  # delete b, insert d and e: 3 edits over 3 words
    assert (rate.edits, rate.reference_units) == (3, 3) and rate.rate == 1.0
    assert word_error_rate(["a b"], [""]).rate == 1.0  # an empty hypothesis deletes every word
    assert word_error_rate(["a"], ["a b c d"]).rate == 3.0  # insertions can push WER above 1


def test_wer_and_cer_match_jiwer():
    wer = word_error_rate(REFERENCES, HYPOTHESES)
    assert wer.rate == pytest.approx(jiwer.wer(REFERENCES, HYPOTHESES))
    cer = char_error_rate(REFERENCES, HYPOTHESES)
    normalised = [" ".join(h.split()) for h in HYPOTHESES]
    assert cer.rate == pytest.approx(jiwer.cer(REFERENCES, normalised))
    for reference, hypothesis in zip(REFERENCES, HYPOTHESES, strict=True):
        assert word_error_rate([reference], [hypothesis]).rate == pytest.approx(jiwer.wer(reference, hypothesis))


def test_score_transcripts_checks_ids(tmp_path):
    references = {"u1": "sun moon", "u2": "tea"}
    score = score_transcripts(references, {"u2": "tea", "u1": "sun"})
    assert score.wer.edits == 1 and score.wer.reference_units == 3 and score.utterances == 2
    with pytest.raises(DataError, match="u2") as error:
        score_transcripts(references, {"u1": "sun"}, hypotheses_path=tmp_path / "hyp")
    assert error.value.path == str(tmp_path / "hyp")
    with pytest.raises(DataError, match="u9"):
        score_transcripts(references, {"u1": "sun", "u2": "tea", "u9": "x"})


def test_empty_references_are_refused():
    with pytest.raises(ValueError, match="empty"):
        word_error_rate([""], ["a"])
