"""Combine Kaldi data dirs into one (Kaldi's ``utils/combine_data.sh``): LibriSpeech's 960 h from its parts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from audiossl.data.kaldi import DataDir
from audiossl.errors import DataError


def combine(data_dirs: Sequence[str | Path]) -> DataDir:
    """The union of ``data_dirs``: every table merged; a table is kept only when every dir has it.

    Utterance (and recording) ids must be disjoint: a repeated id is an error naming both dirs.
    """
    if not data_dirs:
        raise DataError("nothing to combine")
    parts = [DataDir.load(d) for d in data_dirs]
    out = DataDir(
        text=None if any(p.text is None for p in parts) else {},
        utt2dur=None if any(p.utt2dur is None for p in parts) else {},
        utt2num_samples=None if any(p.utt2num_samples is None for p in parts) else {},
        segments=None if any(p.segments is None for p in parts) else {},
    )
    if out.segments is None and any(p.segments is not None for p in parts):
        raise DataError("cannot combine dirs with segments and dirs without", parts[0].path)
    labels = set.intersection(*(set(p.labels) for p in parts))
    out.labels = {name: {} for name in sorted(labels)}
    seen_utts: dict[str, Path | None] = {}
    seen_recordings: dict[str, Path | None] = {}
    for part in parts:
        for seen, keys in ((seen_utts, part.utterance_ids), (seen_recordings, part.wav_scp)):
            for key in keys:
                if key in seen:
                    raise DataError(f"id {key!r} is in both {seen[key]} and {part.path}", part.path)
                seen[key] = part.path
        out.wav_scp.update(part.wav_scp)
        out.utt2spk.update(part.utt2spk)
        for mine, theirs in ((out.text, part.text), (out.utt2dur, part.utt2dur), (out.segments, part.segments)):
            if mine is not None:
                mine.update(theirs)
        if out.utt2num_samples is not None:
            out.utt2num_samples.update(part.utt2num_samples)
        for name in labels:
            out.labels[name].update(part.labels[name])
    return out
