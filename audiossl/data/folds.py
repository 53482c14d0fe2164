"""Leave-one-group-out folds of a data dir by a label table (IEMOCAP's sessions, corpora's recording sites).

Cross-validation protocols often hold out a group that is neither one speaker nor a random
share: IEMOCAP's standard protocol holds out one session (two speakers) per fold, so that no
speaker of the test session and no dialogue partner of it is seen in training.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.data.subset import subset
from audiossl.errors import DataError


def group_folds(data: DataDir, label: str) -> dict[str, tuple[DataDir, DataDir]]:
    """``{group: (train, test)}``: test = the utterances whose ``utt2<label>`` is ``group``, train = the rest."""
    table = data.labels.get(label)
    where = None if data.path is None else Path(data.path) / f"utt2{label}"
    if table is None:
        raise DataError(f"no utt2{label} table to make folds by", where or data.path)
    missing = [utt for utt in data.utterance_ids if utt not in table]
    if missing:
        raise DataError(f"utterance {missing[0]!r} has no {label} label", where)
    groups = sorted(set(table[utt] for utt in data.utterance_ids), key=kaldi_sort_key)
    if len(groups) < 2:
        raise DataError(f"leave-one-{label}-out folds need at least 2 values, found {groups}", where)
    for group in groups:
        if "/" in group or group.startswith("."):
            raise DataError(f"{label} value {group!r} cannot name a fold folder", where)
    return {
        group: (
            subset(data, [u for u in data.utterance_ids if table[u] != group]),
            subset(data, [u for u in data.utterance_ids if table[u] == group]),
        )
        for group in groups
    }


def write_group_folds(data_dir: str | Path, out_dir: str | Path, label: str) -> list[Path]:
    """Write ``out_dir/<group>/train`` and ``out_dir/<group>/test`` for every value of ``utt2<label>``."""
    folds = group_folds(DataDir.load(data_dir), label)
    written = []
    for group, (train, test) in folds.items():
        train.save(Path(out_dir) / group / "train")
        test.save(Path(out_dir) / group / "test")
        written.append(Path(out_dir) / group)
    return written
