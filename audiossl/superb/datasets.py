"""Ready-made SUPERB data for ``audiossl superb`` with nothing downloaded: the synthetic corpus and FSDD.

:func:`prepare_synth` makes every task's train/dev/test dirs from the embedded synthetic
corpus (plus a one-word-per-clip corpus for keyword spotting, as Speech Commands' clips are,
and noisy pairs and two-speaker mixtures through the enhance plugin when it is installed)
and writes their data config; :func:`prepare_fsdd` does the same for FSDD's digits (KS-like
and SID). :func:`save_part` writes a part of a data dir with the per-utterance files
``DataDir`` does not know (``text.phn``, ``words.ctm``, ``phones.ctm``) filtered alike.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from audiossl.data.kaldi import DataDir, read_table, write_table
from audiossl.data.subset import split, subset
from audiossl.errors import DataError
from audiossl.fileio import atomic_write
from audiossl.superb.dataconfig import write_data_config

log = logging.getLogger(__name__)

#: Per-utterance files beside the Kaldi tables that a part keeps (filtered to its utterances).
EXTRA_TABLES = ("text.phn",)
EXTRA_CTMS = ("words.ctm", "phones.ctm")
SHARED_FILES = ("lexicon.txt", "words.txt")


def save_part(part: DataDir, source: Path, out: Path) -> Path:
    """Save ``part`` (a subset of the data dir ``source``) to ``out`` with text.phn/CTMs/lexicon filtered alike."""
    part.save(out)
    keep = set(part.utterance_ids)
    for name in EXTRA_TABLES:
        if (source / name).is_file():
            write_table(out / name, {k: v for k, v in read_table(source / name).items() if k in keep})
    for name in EXTRA_CTMS:
        if (source / name).is_file():
            with open(source / name, encoding="utf-8") as handle, atomic_write(out / name) as target:
                target.writelines(line for line in handle if line.split(maxsplit=1)[:1] and line.split()[0] in keep)
    for name in SHARED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    return out


def split_dir(
    source: Path, out: Path, fractions: dict[str, float], by: str, seed: int, cover: str | None = None
) -> dict[str, Path]:
    """Split the data dir ``source`` into ``out/<part>`` (see :func:`audiossl.data.subset.split`) keeping extras.

    ``cover``: a label (``kw`` for utt2kw) every class of which the ``train`` part must hold: an
    utterance of another part whose class ``train`` lacks moves to ``train`` (a classifier
    cannot be scored on a class it never saw; a small corpus split at random can miss one).
    """
    data = DataDir.load(source)
    parts = split(data, fractions, by=by, seed=seed)
    if cover is not None:
        labels = data.labels[cover]
        seen = {labels[u] for u in parts["train"].utterance_ids}
        moved = []
        for name, part in parts.items():
            if name != "train":
                for utt in part.utterance_ids:
                    if labels[utt] not in seen:
                        seen.add(labels[utt])
                        moved.append(utt)
        if moved:
            log.info("split of %s: %d utterances moved to train so it holds every %s class", source, len(moved), cover)
            keep = set(moved)
            parts = {
                name: subset(data, part.utterance_ids + moved)
                if name == "train"
                else subset(data, [u for u in part.utterance_ids if u not in keep])
                for name, part in parts.items()
            }
    return {name: save_part(part, source, out / name) for name, part in parts.items()}


def _enhance_data(kind: str, parts: dict[str, Path], out: Path, sample_rate: int, seed: int) -> dict[str, Path] | None:
    """Noisy pairs (se) or mixtures (ss) of every part through the enhance plugin; None when it is not installed."""
    try:
        from audiossl_enhance.api import prepare_data
    except ImportError:
        log.warning("the enhance plugin (audiossl-enhance) is not installed: no %s data", kind)
        return None
    return {
        name: prepare_data(kind, part, out / name, sample_rate=sample_rate, seed=seed + index)
        for index, (name, part) in enumerate(parts.items())
    }


def prepare_synth(
    out: str | Path,
    *,
    speakers: int = 8,
    utts_per_speaker: int = 24,
    seed: int = 0,
    sample_rate: int = 16000,
    enhance: bool = True,
) -> Path:
    """Every SUPERB task on the synthetic corpus under ``out``; returns the data config ``out/superb.yaml``.

    Closed-set tasks (ks, ic, sid, er, asr, pr) split utterances 70/15/15 within every
    speaker; sv splits speakers in halves (test speakers unseen; no dev part, since its
    validation must hold training speakers: the trainer holds it out itself); qbe cuts its queries
    from the training part's word alignments and searches the dev and test parts.
    """
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    out = Path(out)
    if speakers < 4:
        raise DataError(f"the SUPERB synthetic set needs at least 4 speakers (sv tests unseen ones), got {speakers}")
    corpus, keywords = out / "corpus", out / "corpus-kw"
    base = dict(speakers=speakers, utts_per_speaker=utts_per_speaker, seed=seed, sample_rate=sample_rate)
    synthesize_corpus(corpus, SynthConfig(**base))
    synthesize_corpus(keywords, SynthConfig(**base, words_per_utt=(1, 1)))
    fractions = {"train": 0.7, "dev": 0.15, "test": 0.15}
    utt = split_dir(corpus, out / "utt", fractions, "utterance", seed, cover="intent")
    kw = split_dir(keywords, out / "kw", fractions, "utterance", seed, cover="kw")
    # sv: test speakers unseen in training; validation (early stopping) is held out of the training speakers
    spk = split_dir(corpus, out / "spk", {"train": 0.5, "test": 0.5}, "speaker", seed)

    def dirs(parts: dict[str, Path], label: str | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {name: str(path.relative_to(out)) for name, path in parts.items()}
        if label is not None:
            entry["label"] = label
        return entry

    tasks: dict[str, dict[str, Any]] = {
        "ks": dirs(kw, "utt2kw"),
        "ic": dirs(utt, "utt2intent"),
        "sid": dirs(utt, "utt2spk"),
        "er": dirs(utt, "utt2emo"),
        "asr": dirs(utt, "text"),
        "pr": dirs(utt, "text.phn"),
        "sv": dirs(spk, "utt2spk"),
        "qbe": {"queries": str(utt["train"].relative_to(out)), "dev": dirs(utt)["dev"], "test": dirs(utt)["test"]},
    }
    if enhance:
        for kind in ("se", "ss"):
            made = _enhance_data(kind, utt, out / kind, sample_rate, seed)
            if made is not None:
                tasks[kind] = dirs(made)
    header = (
        f"SUPERB on the embedded synthetic corpus: {speakers} speakers x {utts_per_speaker} utterances, "
        f"seed {seed}, {sample_rate} Hz\nwritten by `audiossl superb prepare-synth`; paths are relative to this file"
    )
    return write_data_config(out / "superb.yaml", tasks, header)


def prepare_fsdd(recordings: str | Path, out: str | Path, *, seed: int = 0) -> Path:
    """KS-like digit classification, SID and digit ASR on FSDD under ``out``; returns ``out/superb.yaml``.

    FSDD's official split (takes 0-4 of every speaker and digit in test) is kept; a dev part
    (15 % of every speaker's training utterances) is split off the training part.
    """
    from audiossl.data.fsdd import prepare_fsdd as prepare

    out = Path(out)
    prepare(recordings, out / "official")
    parts = split_dir(out / "official" / "train", out, {"train": 0.85, "dev": 0.15}, "utterance", seed)
    test = out / "official" / "test"
    dirs = {"train": str(parts["train"].relative_to(out)), "dev": str(parts["dev"].relative_to(out))}
    dirs["test"] = str(test.relative_to(out))
    tasks = {
        "ks": {**dirs, "label": "utt2digit"},
        "sid": {**dirs, "label": "utt2spk"},
        "asr": {**dirs, "label": "text"},
    }
    if (test / "text.phn").is_file():
        tasks["pr"] = {**dirs, "label": "text.phn"}
    header = (
        "SUPERB-style tasks on the Free Spoken Digit Dataset (8 kHz): ks = the spoken digit (utt2digit), "
        "sid, digit asr\nwritten by `audiossl superb prepare-fsdd`; paths are relative to this file"
    )
    return write_data_config(out / "superb.yaml", tasks, header)
