"""A deterministic held-out (dev) part of a training data dir, for early stopping and model selection.

SUPERB-style probes are selected on a dev set (s3prl keeps the checkpoint with the best dev
metric); a user who hands audiossl one training dir still needs one, or the default head is
either under-trained or over-fitted with nobody the wiser. :func:`heldout_split` takes about
``fraction`` of the utterances (at least ``min_utterances``) out of the training dir:

* ``by="utterance"``: stratified by the task's label when it has one (every class keeps the
  same share in both parts, and each class with two or more utterances gives at least one to
  each part), else drawn at random;
* ``by="speaker"``: whole speakers are held out (for tasks whose test speakers are unseen).

The draw depends only on the seed and the utterance ids (not on file order), so a resumed run
and every run of an lr sweep see the same split. :func:`write_heldout` saves both parts under
``RUN_DIR/heldout/{train,dev}`` with ``heldout.json`` (the rule, the counts and the dev ids), so
the split is on record next to the result.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from audiossl.data.kaldi import DataDir, kaldi_sort_key
from audiossl.data.subset import subset
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write

#: Record of the split in the run dir.
HELDOUT_FILE = "heldout.json"
#: Folder of the two parts in the run dir.
HELDOUT_DIR = "heldout"


@dataclass(frozen=True)
class HeldoutSplit:
    """Which utterances train the head and which select it (both sorted in Kaldi order)."""

    train: list[str]
    dev: list[str]
    by: str
    stratify: str | None
    fraction: float
    seed: int


def _draw(ids: Sequence[str], count: int, rng: random.Random) -> list[str]:
    ordered = sorted(ids, key=kaldi_sort_key)
    rng.shuffle(ordered)
    return ordered[:count]


def heldout_split(
    data: DataDir,
    *,
    fraction: float = 0.1,
    min_utterances: int = 10,
    by: Literal["utterance", "speaker"] = "utterance",
    stratify: str | None = None,
    seed: int = 0,
) -> HeldoutSplit:
    """Split ``data`` into train and dev parts (see the module docstring); a DataError when it cannot.

    The dev part has ``max(min_utterances, round(fraction * N))`` utterances (by utterance), or
    the fewest whole speakers (in a seeded order) that reach that count (by speaker); the train
    part keeps at least half of the data.
    """
    if not 0.0 < fraction < 0.5:
        raise ConfigError(f"held-out fraction must be in (0, 0.5), got {fraction}")
    ids = data.utterance_ids
    total = len(ids)
    want = max(min_utterances, round(fraction * total))
    if want > total // 2:
        raise DataError(
            f"{total} utterances are too few to hold out {want} for early stopping (train needs at least as many); "
            "give a --valid dir or turn early stopping off",
            data.path,
        )
    rng = random.Random(f"heldout:{seed}")
    dev: list[str] = []
    if by == "speaker":
        speaker = {utt: data.utt2spk.get(utt, utt) for utt in ids}
        groups: dict[str, list[str]] = {}
        for utt in ids:
            groups.setdefault(speaker[utt], []).append(utt)
        if len(groups) < 2:
            raise DataError("a speaker-disjoint held-out part needs at least two speakers (utt2spk)", data.path)
        for spk in _draw(list(groups), len(groups), rng):
            if len(dev) >= want or len(groups[spk]) + len(dev) > total // 2:
                continue
            dev.extend(groups[spk])
        if not dev:
            raise DataError("no speaker fits into the held-out part without taking half the data", data.path)
    elif by == "utterance":
        if stratify is None:
            dev = _draw(ids, want, rng)
        else:
            table = data.labels.get(stratify) if stratify not in ("spk",) else data.utt2spk
            if table is None:
                raise DataError(f"cannot stratify the held-out part: no utt2{stratify}", data.path)
            classes: dict[str, list[str]] = {}
            for utt in ids:
                classes.setdefault(table[utt], []).append(utt)
            # largest remainder over classes, then at least one per class of two or more
            exact = {name: len(members) * want / total for name, members in classes.items()}
            counts = {name: math.floor(value) for name, value in exact.items()}
            order = sorted(classes, key=lambda n: (-(exact[n] - counts[n]), kaldi_sort_key(n)))
            for name in order[: want - sum(counts.values())]:
                counts[name] += 1
            for name in sorted(classes, key=kaldi_sort_key):
                members = classes[name]
                count = min(max(counts[name], 1 if len(members) >= 2 else 0), len(members) - 1)
                dev.extend(_draw(members, count, random.Random(f"heldout:{seed}:{name}")))
    else:
        raise ConfigError(f"held-out split by 'utterance' or 'speaker', not {by!r}")
    held = set(dev)
    return HeldoutSplit(
        train=[u for u in ids if u not in held],
        dev=sorted(held, key=kaldi_sort_key),
        by=by,
        stratify=stratify if by == "utterance" else None,
        fraction=fraction,
        seed=seed,
    )


def write_heldout(data: DataDir, split: HeldoutSplit, run_dir: str | Path) -> tuple[Path, Path]:
    """Save ``RUN_DIR/heldout/train`` and ``/dev`` and ``RUN_DIR/heldout.json``; return the two dirs.

    A run dir that already records a split (a resumed run, a sweep) must record this one: a
    different split is a ConfigError naming the file.
    """
    run_dir = Path(run_dir)
    record = run_dir / HELDOUT_FILE
    described = {**asdict(split), "source": str(Path(data.path).resolve()) if data.path else None}
    described["counts"] = {"train": len(split.train), "dev": len(split.dev)}
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("dev") != split.dev or saved.get("train") != split.train:
            raise ConfigError("this run dir records another held-out split (other data, seed or rule)", record)
    base = run_dir / HELDOUT_DIR
    train_dir = subset(data, split.train).save(base / "train")
    dev_dir = subset(data, split.dev).save(base / "dev")
    with atomic_write(record) as handle:
        json.dump(described, handle, indent=1)
        handle.write("\n")
    return train_dir, dev_dir


def read_heldout(run_dir: str | Path) -> dict | None:
    """The ``heldout.json`` of a run dir, or None when the run used no held-out split."""
    path = Path(run_dir) / HELDOUT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
