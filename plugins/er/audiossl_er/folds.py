"""Leave-speaker-out folds: every speaker is tested by a model that never heard them.

Emotion corpora are small and speaker-dependent, so results are reported as the mean over
folds that each hold out some speakers (IEMOCAP's customary 5 sessions, or one speaker per
fold). :func:`leave_speaker_out_folds` writes ``OUT/fold<k>/{train,test}`` data dirs;
:func:`cross_validate` trains and evaluates every fold and averages WA and UA.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.data.subset import subset
from audiossl.data.wav_scp import check_pipes
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write


def speaker_folds(speakers: list[str], num_folds: int | None = None) -> list[list[str]]:
    """Speakers (sorted) dealt round-robin into ``num_folds`` folds; one speaker per fold by default."""
    ordered = sorted(set(speakers), key=kaldi_sort_key)
    count = len(ordered) if num_folds is None else num_folds
    if len(ordered) < 2:
        raise ConfigError(f"leave-speaker-out folds need at least 2 speakers, found {len(ordered)}")
    if not 2 <= count <= len(ordered):
        raise ConfigError(f"num_folds must be between 2 and the number of speakers ({len(ordered)}), got {count}")
    return [ordered[fold::count] for fold in range(count)]


def leave_speaker_out_folds(data_dir: str | Path, out_dir: str | Path, num_folds: int | None = None) -> list[Path]:
    """Write ``out_dir/fold<k>/train`` and ``/test`` (test = the fold's speakers); return the fold dirs.

    Also writes ``out_dir/folds.json`` (speakers of every fold).
    """
    data = DataDir.load(data_dir)
    if not data.utt2spk:
        raise DataError("leave-speaker-out folds need utt2spk", Path(data_dir) / "utt2spk")
    missing = [utt for utt in data.utterance_ids if utt not in data.utt2spk]
    if missing:
        raise DataError(f"utterance {missing[0]!r} has no speaker", Path(data_dir) / "utt2spk")
    folds = speaker_folds(list(data.utt2spk.values()), num_folds)
    out_dir = Path(out_dir)
    fold_dirs = []
    for index, held_out in enumerate(folds, start=1):
        fold_dir = out_dir / f"fold{index:02d}"
        test = {utt for utt in data.utterance_ids if data.utt2spk[utt] in set(held_out)}
        subset(data, test).save(fold_dir / "test")
        subset(data, set(data.utterance_ids) - test).save(fold_dir / "train")
        fold_dirs.append(fold_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "folds.json") as handle:
        json.dump({f"fold{i:02d}": speakers for i, speakers in enumerate(folds, start=1)}, handle, indent=2)
        handle.write("\n")
    return fold_dirs


def cross_validate(
    train_fold: Callable[[Path, Path], Path],
    evaluate_fold: Callable[[Path, Path, Path], dict[str, float]],
    data_dir: str | Path,
    out_dir: str | Path,
    num_folds: int | None = None,
) -> dict[str, Any]:
    """Folds, then per fold ``train_fold(train_dir, run_dir) -> run_dir`` and ``evaluate_fold(run_dir, test_dir,
    eval_dir) -> metrics``; returns and writes ``out_dir/summary.json`` with per-fold and mean WA and UA.
    """
    out_dir = Path(out_dir)
    check_pipes(DataDir.load(data_dir))  # refuse wav.scp pipes at the source, before writing the folds
    fold_dirs = leave_speaker_out_folds(data_dir, out_dir / "data", num_folds)
    per_fold = {}
    for fold_dir in fold_dirs:
        run_dir = train_fold(fold_dir / "train", out_dir / fold_dir.name / "run")
        per_fold[fold_dir.name] = evaluate_fold(run_dir, fold_dir / "test", out_dir / fold_dir.name / "eval")
    summary = {
        "folds": per_fold,
        "mean": {name: sum(m[name] for m in per_fold.values()) / len(per_fold) for name in ("WA", "UA")},
    }
    with atomic_write(out_dir / "summary.json") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    return summary
