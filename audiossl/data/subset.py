"""Subsets and splits of a Kaldi data dir, with every table filtered alike.

Recipes need held-out data the corpus does not define: a test set of unseen speakers for
verification (``by="speaker"``), held-out utterances of the training speakers for closed-set
tasks (``by="utterance"``, stratified per speaker), and a handful of utterances for smoke
runs. Splits are deterministic in the seed and do not depend on table order on disk.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.errors import DataError, UserError


def subset(data: DataDir, ids: Iterable[str]) -> DataDir:
    """The utterances ``ids`` of ``data`` with every table filtered (recordings kept when segments use them)."""
    keep = set(ids)
    unknown = sorted(keep - set(data.utterance_ids), key=kaldi_sort_key)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(f"utterance(s) not in this data dir: {shown}{' ...' if len(unknown) > 5 else ''}", data.path)

    def only(table: Mapping | None) -> dict | None:
        return None if table is None else {k: v for k, v in table.items() if k in keep}

    segments = only(data.segments)
    recordings = {s.recording for s in segments.values()} if segments is not None else keep
    return DataDir(
        wav_scp={k: v for k, v in data.wav_scp.items() if k in recordings},
        segments=segments,
        utt2spk=only(data.utt2spk) or {},
        text=only(data.text),
        utt2dur=only(data.utt2dur),
        utt2num_samples=only(data.utt2num_samples),
        labels={name: only(table) for name, table in data.labels.items()},
    )


def _speaker_of(data: DataDir) -> dict[str, str]:
    # Without utt2spk every utterance is its own speaker (Kaldi's convention).
    return {utt: data.utt2spk.get(utt, utt) for utt in data.utterance_ids}


def split(
    data: DataDir,
    fractions: Mapping[str, float],
    *,
    by: Literal["utterance", "speaker"] = "utterance",
    seed: int = 0,
) -> dict[str, DataDir]:
    """Split ``data`` into named parts of about ``fractions`` of its utterances (or speakers).

    ``by="speaker"``: every speaker goes to exactly one part (unseen-speaker test sets).
    ``by="utterance"``: each speaker's utterances are shared out between the parts in the same
    proportions, so every part sees every speaker (closed-set tasks). Every part gets at least
    one speaker / one utterance per speaker when there are enough; an empty part is an error.
    """
    if not fractions:
        raise UserError("no parts to split into")
    if any(f <= 0 for f in fractions.values()):
        raise UserError(f"split fractions must be positive, got {dict(fractions)}")
    total = sum(fractions.values())
    names = list(fractions)
    speaker = _speaker_of(data)
    groups: dict[str, list[str]] = {}
    for utt in data.utterance_ids:
        groups.setdefault(speaker[utt], []).append(utt)
    parts: dict[str, list[str]] = {name: [] for name in names}
    if by == "speaker":
        speakers = sorted(groups, key=kaldi_sort_key)
        random.Random(f"split:{seed}").shuffle(speakers)
        for name, chunk in zip(names, _shares(speakers, [fractions[n] / total for n in names]), strict=True):
            parts[name] = [utt for spk in chunk for utt in groups[spk]]
    elif by == "utterance":
        for spk in sorted(groups, key=kaldi_sort_key):
            utts = list(groups[spk])
            random.Random(f"split:{seed}:{spk}").shuffle(utts)
            for name, chunk in zip(names, _shares(utts, [fractions[n] / total for n in names]), strict=True):
                parts[name].extend(chunk)
    else:
        raise UserError(f"split by 'utterance' or 'speaker', not {by!r}")
    empty = [name for name, utts in parts.items() if not utts]
    if empty:
        raise DataError(f"split part(s) {', '.join(empty)} would be empty: too few {by}s", data.path)
    return {name: subset(data, utts) for name, utts in parts.items()}


def _shares(items: list[str], fractions: list[float]) -> list[list[str]]:
    """Consecutive chunks of ``items`` sized by ``fractions`` (largest remainder; each non-empty if possible)."""
    n = len(items)
    exact = [f * n for f in fractions]
    sizes = [int(x) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: exact[i] - sizes[i], reverse=True)[: n - sum(sizes)]:
        sizes[i] += 1
    for i, size in enumerate(sizes):  # take one from the largest part for an empty one
        if size == 0 and n >= len(sizes):
            largest = max(range(len(sizes)), key=sizes.__getitem__)
            sizes[largest] -= 1
            sizes[i] = 1
    out, start = [], 0
    for size in sizes:
        out.append(items[start : start + size])
        start += size
    return out


def smoke_subset(data: DataDir, utts_per_speaker: int, max_speakers: int | None = None) -> DataDir:
    """``utts_per_speaker`` utterances of each of the first ``max_speakers`` speakers (Kaldi order).

    The utterances are spread evenly over each speaker's list rather than taken from its start,
    so a handful still covers what the ids are ordered by (FSDD's digits, a book's chapters).
    """
    if utts_per_speaker < 1:
        raise UserError(f"utts_per_speaker must be >= 1, got {utts_per_speaker}")
    speaker = _speaker_of(data)
    groups: dict[str, list[str]] = {}
    for utt in data.utterance_ids:
        spk = speaker[utt]
        if spk in groups or max_speakers is None or len(groups) < max_speakers:
            groups.setdefault(spk, []).append(utt)
    keep = []
    for utts in groups.values():
        count = min(utts_per_speaker, len(utts))
        keep.extend(utts[(i * len(utts)) // count] for i in range(count))
    return subset(data, keep)


def parse_fractions(spec: str) -> dict[str, float]:
    """``"train=0.8,test=0.2"`` -> ``{"train": 0.8, "test": 0.2}``; a clear error otherwise."""
    out: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            fraction = float(value)
        except ValueError:
            fraction = -1.0
        if not sep or not name or fraction <= 0 or name in out or "/" in name:
            raise UserError(f"bad part {item!r} in {spec!r}: expected name=fraction, e.g. train=0.8,test=0.2")
        out[name] = fraction
    return out


def write_parts(parts: Mapping[str, DataDir], out_dir: str | Path) -> dict[str, Path]:
    """Save each part as ``out_dir/<name>`` (tables written atomically)."""
    return {name: part.save(Path(out_dir) / name) for name, part in parts.items()}
