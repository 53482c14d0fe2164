"""Verification trial lists in the VoxCeleb format, and balanced trial lists drawn from a data dir.

A trials file has one trial per line, ``<label> <enroll> <test>``, where the label is ``1`` for a
target trial (same speaker) and ``0`` for a non-target one, as in VoxCeleb1's ``veri_test.txt``.
Here ``enroll`` and ``test`` are utterance ids of a data dir (VoxCeleb's lists use wav paths;
a data dir made from them uses those as ids).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.downstream.task import check_labels
from audiossl.errors import DataError
from audiossl.fileio import atomic_write


@dataclass(frozen=True)
class Trial:
    """One verification trial: does ``test`` come from the speaker of ``enroll``?"""

    label: int
    """1: target trial (same speaker); 0: non-target."""
    enroll: str
    """Utterance id of the enrolment side."""
    test: str
    """Utterance id of the test side."""
    line: int = 0
    """Line in the trials file it came from (0 when generated)."""


def read_trials(path: str | Path, known: Collection[str] | None = None) -> list[Trial]:
    """Read ``<label> <enroll> <test>`` lines; with ``known`` ids, an unknown utterance is a :class:`DataError`.

    Errors name the trials file and line: a wrong number of fields, a label other than 1/0, an
    utterance not in ``known`` (typically the data dir the embeddings come from).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("trials file not found", path) from None
    trials = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            raise DataError(f"not valid UTF-8 (byte {error.start})", path, number) from None
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            raise DataError(f"expected '<label> <enroll> <test>', got {len(fields)} fields", path, number)
        label, enroll, test = fields
        if label not in ("0", "1"):
            raise DataError(f"label must be 1 (target) or 0 (non-target), got {label!r}", path, number)
        if known is not None:
            for side, utt in (("enrolment", enroll), ("test", test)):
                if utt not in known:
                    raise DataError(f"{side} utterance {utt!r} is not in the data dir", path, number)
        trials.append(Trial(int(label), enroll, test, number))
    if not trials:
        raise DataError("trials file has no trials", path)
    return trials


def write_trials(path: str | Path, trials: Iterable[Trial]) -> Path:
    """Write trials as ``<label> <enroll> <test>`` lines, atomically."""
    path = Path(path)
    with atomic_write(path) as handle:
        for trial in trials:
            handle.write(f"{trial.label} {trial.enroll} {trial.test}\n")
    return path


def utt2spk_of(data: DataDir) -> dict[str, str]:
    """The data dir's utt2spk restricted to its utterances; a :class:`DataError` naming the file when absent."""
    where = None if data.path is None else Path(data.path) / "utt2spk"
    if not data.utt2spk:
        raise DataError("speaker verification needs speaker labels, but utt2spk is missing or empty", where)
    utterances = data.utterance_ids
    missing = [u for u in utterances if u not in data.utt2spk]
    if missing:
        raise DataError(f"{len(missing)} utterances have no speaker, e.g. {missing[0]!r}", where)
    return {u: data.utt2spk[u] for u in utterances}


def check_verification_data(data_dir: str | Path, trials: str | Path | None = None) -> None:
    """A data dir can be scored: a trials file (``trials`` or ``DATA/trials``), or speaker labels to draw trials from.

    Evaluation speakers may be new (verification is open-set), so only the labels' presence is checked.
    """
    has_trials = trials is not None or (Path(data_dir) / "trials").is_file()
    check_labels(data_dir, () if has_trials else ("spk",))
    if not has_trials:
        utt2spk_of(DataDir.load(data_dir))


def make_trials(
    utt2spk: dict[str, str] | DataDir | str | Path, num_trials: int | None = None, seed: int = 0
) -> list[Trial]:
    """A balanced trial list: as many target as non-target trials, drawn without repeats, fixed by ``seed``.

    ``num_trials`` (even) caps the total; by default every same-speaker pair is a target trial,
    matched by as many distinct cross-speaker pairs. Each pair appears once, its sides in random
    order. The list is returned sorted by (enroll, test) in Kaldi order.
    """
    if not isinstance(utt2spk, dict):
        utt2spk = utt2spk_of(utt2spk if isinstance(utt2spk, DataDir) else DataDir.load(utt2spk))
    if num_trials is not None and num_trials < 2:
        raise ValueError(f"num_trials must be at least 2, got {num_trials}")
    utts = sorted(utt2spk, key=kaldi_sort_key)
    index = {u: i for i, u in enumerate(utts)}
    speakers: dict[str, list[int]] = {}
    for u in utts:
        speakers.setdefault(utt2spk[u], []).append(index[u])
    n = len(utts)
    target_pairs = [pair for members in speakers.values() for pair in combinations(members, 2)]
    num_nontarget_pairs = n * (n - 1) // 2 - len(target_pairs)
    if not target_pairs:
        raise DataError("no speaker has two utterances: no target trial can be made")
    if num_nontarget_pairs == 0:
        raise DataError("only one speaker: no non-target trial can be made")
    half = min(len(target_pairs), num_nontarget_pairs)
    if num_trials is not None:
        half = min(half, num_trials // 2)
    rng = np.random.default_rng(seed)
    chosen_targets = [target_pairs[i] for i in rng.choice(len(target_pairs), size=half, replace=False)]
    chosen_nontargets = _draw_nontargets(utts, utt2spk, half, num_nontarget_pairs, rng)
    trials = []
    for label, pairs in ((1, chosen_targets), (0, chosen_nontargets)):
        for (a, b), swap in zip(pairs, rng.random(len(pairs)) < 0.5, strict=True):
            enroll, test = (utts[b], utts[a]) if swap else (utts[a], utts[b])
            trials.append(Trial(label, enroll, test))
    trials.sort(key=lambda t: (kaldi_sort_key(t.enroll), kaldi_sort_key(t.test)))
    return trials


def _draw_nontargets(
    utts: list[str], utt2spk: dict[str, str], count: int, available: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """``count`` distinct cross-speaker index pairs (i < j)."""
    n = len(utts)
    if available <= 4 * count:  # dense: list them all and choose
        pairs = [(i, j) for i, j in combinations(range(n), 2) if utt2spk[utts[i]] != utt2spk[utts[j]]]
        return [pairs[k] for k in rng.choice(len(pairs), size=count, replace=False)]
    speaker_of = np.array([utt2spk[u] for u in utts])
    chosen: dict[tuple[int, int], None] = {}  # an ordered set: draws keep their order
    while len(chosen) < count:  # sparse: draw pairs in blocks, keep the fresh cross-speaker ones
        draws = rng.integers(0, n, size=(4 * count, 2))  # (K, 2)
        draws = draws[speaker_of[draws[:, 0]] != speaker_of[draws[:, 1]]]  # also drops i == j
        for i, j in np.sort(draws, axis=1).tolist():
            chosen.setdefault((i, j))
            if len(chosen) == count:
                break
    return list(chosen)
