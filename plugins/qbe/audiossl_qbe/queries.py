"""Spoken queries (cut from a data dir by its word alignments, or listed) and the documents' truth.

A query is an audio span standing for a *term* (a word, or any string the documents'
transcripts contain as a run of whole words). The truth of a (term, document) trial is
whether the document's transcript (``text``) contains the term.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.data.synth import read_ctm
from audiossl.errors import DataError


@dataclass(frozen=True)
class Query:
    """One spoken query: ``[start, end)`` seconds of an audio file (``end`` None: to the end)."""

    query_id: str
    term: str
    path: str
    start: float = 0.0
    end: float | None = None
    source: str = ""
    """Where the query was defined (``file:line``), for error messages."""


def queries_from_alignments(
    data_dir: str | Path,
    *,
    per_term: int = 1,
    terms: set[str] | None = None,
    min_seconds: float = 0.2,
) -> list[Query]:
    """Up to ``per_term`` examples of every aligned word of ``data_dir`` (``words.ctm`` + ``wav.scp``).

    Examples are taken in Kaldi utterance order, at most one per utterance and term, so a
    query set is deterministic; words shorter than ``min_seconds`` are skipped (too few
    frames to match); ``terms`` restricts the words. The data dir must not use ``segments``
    (alignments are relative to the recording).
    """
    data_dir = Path(data_dir)
    data = DataDir.load(data_dir)
    if data.segments:
        raise DataError("cutting queries needs a data dir without segments (alignments are per recording)", data_dir)
    alignments = read_ctm(data_dir / "words.ctm")
    queries: list[Query] = []
    taken: dict[str, int] = {}
    for utt in sorted(alignments, key=kaldi_sort_key):
        if utt not in data.wav_scp:
            raise DataError(f"utterance {utt!r} of words.ctm is not in wav.scp", data_dir / "words.ctm")
        seen: set[str] = set()
        for word, start, end in alignments[utt]:
            if word in seen or (terms is not None and word not in terms) or end - start < min_seconds:
                continue
            if taken.get(word, 0) >= per_term:
                continue
            seen.add(word)
            taken[word] = taken.get(word, 0) + 1
            queries.append(Query(f"{word}-{taken[word]:02d}", word, data.wav_scp[utt], start, end, f"{utt}"))
    if not queries:
        raise DataError(
            "no usable word in the alignments (none long enough or none of the requested terms)", data_dir / "words.ctm"
        )
    return sorted(queries, key=lambda q: (q.term, q.query_id))


def read_query_list(path: str | Path) -> list[Query]:
    """Queries from a list: ``query_id term audio_path [start end]`` per line (seconds; ``#`` comments)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("query list not found", path)
    queries, ids = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (3, 5):
            raise DataError("expected 'query_id term audio_path [start end]'", path, number)
        query_id, term, audio = fields[:3]
        if query_id in ids:
            raise DataError(f"query id {query_id!r} repeats", path, number)
        ids.add(query_id)
        audio_path = Path(audio) if Path(audio).is_absolute() else path.parent / audio
        if not audio_path.is_file():
            raise DataError(f"audio of query {query_id!r} not found: {audio_path}", path, number)
        start, end = 0.0, None
        if len(fields) == 5:
            try:
                start, end = float(fields[3]), float(fields[4])
            except ValueError:
                raise DataError("start and end must be seconds", path, number) from None
            if not 0 <= start < end:
                raise DataError(f"need 0 <= start < end, got {start} {end}", path, number)
        queries.append(Query(query_id, term, str(audio_path), start, end, f"{path}:{number}"))
    if not queries:
        raise DataError("the query list is empty", path)
    return queries


def document_truth(documents: str | Path, queries: list[Query]) -> tuple[list[str], np.ndarray]:
    """(document ids, truth (Q, B) bool): does document ``b``'s transcript contain query ``q``'s term?

    A term that occurs in no document cannot be scored (MTWV and MAP skip it, silently hiding
    a typo or a wrong document set), so it is an error naming the query.
    """
    documents = Path(documents)
    data = DataDir.load(documents)
    if data.text is None:
        raise DataError(
            "documents need transcripts to know where the terms occur (text is missing)", documents / "text"
        )
    ids = data.utterance_ids
    padded = {utt: f" {' '.join(data.text[utt].split())} " for utt in ids}
    truth = np.array([[f" {q.term} " in padded[utt] for utt in ids] for q in queries], dtype=bool)
    missing = [q for q, row in zip(queries, truth, strict=True) if not row.any()]
    if missing:
        names = ", ".join(f"{q.query_id} ({q.term!r}, from {q.source})" for q in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"queries not found in any document: {names}{more}", documents / "text")
    return ids, truth
