"""SUPERB's public corpora -> audiossl data dirs (the part each task needs), and their data-config entries.

Each preparer reads a corpus in the layout its release unpacks to and writes Kaldi data dirs
under ``OUT`` plus the task's entry for ``superb.yaml`` (:func:`add_to_data_config`):

* Speech Commands v0.01/v0.02 (KS): ``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``,
  ``testing_list.txt``, ``_background_noise_/``; SUPERB's 12 classes: ten commands,
  ``_unknown_`` (every other word) and ``_silence_`` (1-s windows of the background noise,
  as segments); an optional separate test set folder (``speech_commands_test_set_v0.01``);
* Fluent Speech Commands (IC): ``data/{train,valid,test}_data.csv`` (path, speakerId,
  transcription, action, object, location) and ``wavs/speakers/...``; the intent is
  ``action_object_location``, as SUPERB's IC scores all three slots together;
* VoxCeleb1 (SID): ``iden_split.txt`` (``1|2|3 id10001/<video>/00001.wav``: train, dev, test);
* LibriSpeech (PR): phones of every transcript through a pronouncing lexicon
  (``librispeech-lexicon.txt`` or CMUdict-style ``WORD PH1 PH2``; stress digits removed);
* QUESST 2014 (QbE): documents and dev/eval queries from ``scoring/language_key_*.lst``
  (English, ``nnenglish``, as SUPERB uses), truth from ``scoring/groundtruth_quesst14_<set>/quesst14_<set>.rttm``
  (``LEXEME <document> ... <query id> ...``): the documents' ``text`` lists the ids of the queries
  they contain, so ``audiossl qbe`` scores them like words;
* Voicebank-DEMAND (SE): ``{clean,noisy}_{trainset_28spk,testset}_wav/``, pairs resampled to 16 kHz
  by the enhance plugin's ``pair_dirs``;
* Libri2Mix (SS): ``Libri2Mix/wav<rate>/<min|max>/<part>/{mix_clean,s1,s2}/<id>.wav``.

IEMOCAP (ER), VoxCeleb1 verification (SV) and LibriSpeech ASR reuse ``audiossl data prepare-*``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from audiossl.data.corpora.common import add_utterance, audio_duration, new_data_dir, visible
from audiossl.data.kaldi import DataDir, Segment, write_table
from audiossl.errors import DataError
from audiossl.fileio import atomic_write

#: Speech Commands' ten command words of SUPERB's KS (the other words are _unknown_).
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"


def _require(path: Path, corpus: str) -> Path:
    if not path.exists():
        raise DataError(f"{corpus}: expected {path.name} here (is this the unpacked release?)", path)
    return path


def _save(data: DataDir, path: Path) -> Path:
    if not data.wav_scp:
        raise DataError("no utterances for this part", path)
    data.save(path)
    return path


def _speech_commands_id(relative: str) -> tuple[str, str]:
    """``yes/0a7c2a8d_nohash_0.wav`` -> (utterance id ``0a7c2a8d-yes-0``, speaker ``0a7c2a8d``)."""
    word, name = relative.split("/")
    speaker, _, index = Path(name).stem.partition("_nohash_")
    return f"{speaker}-{word}-{index}", speaker


def prepare_speech_commands(root: str | Path, out: str | Path, test_root: str | Path | None = None) -> dict[str, Path]:
    """KS train/dev/test dirs (utt2kw: 12 classes) from a Speech Commands folder."""
    root, out = Path(root), Path(out)
    lists = {name: _require(root / f"{name}_list.txt", "Speech Commands") for name in ("validation", "testing")}
    held = {name: set(path.read_text().split()) for name, path in lists.items()}
    parts = {name: new_data_dir(labels=("kw",)) for name in ("train", "dev", "test")}
    for word_dir in visible(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        label = word_dir.name if word_dir.name in COMMANDS else UNKNOWN
        for wav in visible(word_dir.glob("*.wav")):
            relative = f"{word_dir.name}/{wav.name}"
            part = "dev" if relative in held["validation"] else "test" if relative in held["testing"] else "train"
            if test_root is not None and part == "test":
                continue  # the separate test set replaces the list's test part
            utt, speaker = _speech_commands_id(relative)
            add_utterance(parts[part], utt, wav, speaker)
            parts[part].labels["kw"][utt] = label
    if test_root is not None:  # speech_commands_test_set_v0.01: <label>/<file>.wav with _unknown_/_silence_ folders
        for label_dir in visible(p for p in Path(test_root).iterdir() if p.is_dir()):
            for wav in visible(label_dir.glob("*.wav")):
                utt = f"test-{label_dir.name.strip('_')}-{wav.stem}"
                add_utterance(parts["test"], utt, wav, utt)
                parts["test"].labels["kw"][utt] = label_dir.name
    _add_silence(root / "_background_noise_", parts, include_test=test_root is None)
    return {name: _save(data, out / name) for name, data in parts.items()}


def _add_silence(noise_dir: Path, parts: dict[str, DataDir], include_test: bool) -> None:
    """1-s windows of every background-noise file as ``_silence_`` utterances (segments), 8:1:1 by window index."""
    if not noise_dir.is_dir():
        return
    for wav in visible(noise_dir.glob("*.wav")):
        seconds, _ = audio_duration(wav)
        recording = f"silence-{wav.stem.replace('_', '')}"
        for k in range(int(seconds)):
            part = ("train",) * 8 + ("dev", "test")
            name = part[k % 10]
            if name == "test" and not include_test:
                continue
            data = parts[name]
            utt = f"{recording}-{k:04d}"
            data.wav_scp[recording] = str(wav.resolve())
            data.segments = data.segments if data.segments is not None else {}
            data.segments[utt] = Segment(recording, float(k), float(k + 1))
            data.utt2spk[utt] = recording
            data.utt2dur[utt] = 1.0
            data.labels["kw"][utt] = SILENCE
    for data in parts.values():
        if data.segments is not None:  # every utterance needs a segment once one does
            for utt in list(data.utt2spk):
                if utt not in data.segments and utt in data.wav_scp:
                    data.segments[utt] = Segment(utt, 0.0, data.utt2dur[utt])
            data.utt2num_samples = None


def prepare_fluent_speech_commands(root: str | Path, out: str | Path) -> dict[str, Path]:
    """IC train/dev/test dirs (utt2intent = action_object_location, text) from Fluent Speech Commands."""
    root, out = Path(root), Path(out)
    if (root / "fluent_speech_commands_dataset").is_dir():
        root = root / "fluent_speech_commands_dataset"
    parts = {}
    for csv_name, part in (("train_data.csv", "train"), ("valid_data.csv", "dev"), ("test_data.csv", "test")):
        path = _require(root / "data" / csv_name, "Fluent Speech Commands")
        data = new_data_dir(text=True, labels=("intent",))
        with open(path, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), 2):
                try:
                    wav = root / row["path"]
                    speaker = row["speakerId"]
                    intent = "_".join(row[k].replace(" ", "-") for k in ("action", "object", "location"))
                    text = row["transcription"]
                except KeyError as missing:
                    raise DataError(f"missing column {missing}", path, number) from None
                if not wav.is_file():
                    raise DataError(f"audio not found: {wav}", path, number)
                utt = f"{speaker}-{wav.stem}"
                add_utterance(data, utt, wav, speaker)
                data.text[utt] = re.sub(r"[^a-z' ]", "", text.lower()).strip() or "-"
                data.labels["intent"][utt] = intent
        parts[part] = _save(data, out / part)
    return parts


def prepare_voxceleb1_sid(root: str | Path, out: str | Path, iden_split: str | Path) -> dict[str, Path]:
    """SID train/dev/test dirs (utt2spk) from VoxCeleb1 and its identification split ``iden_split.txt``."""
    from audiossl.data.corpora.voxceleb import scan_voxceleb, utterance_id
    from audiossl.data.subset import subset

    data = scan_voxceleb([root])
    iden_split = Path(iden_split)
    chosen: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for number, line in enumerate(_require(iden_split, "VoxCeleb1").read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            code, relative = line.split()
            utt = utterance_id(relative)
            part = {"1": "train", "2": "dev", "3": "test"}[code]
        except (ValueError, KeyError):
            raise DataError("expected '<1|2|3> idNNNNN/<video>/<n>.wav'", iden_split, number) from None
        if utt not in data.wav_scp:
            raise DataError(f"{relative} is not in the corpus folder", iden_split, number)
        chosen[part].append(utt)
    return {name: _save(subset(data, ids), Path(out) / name) for name, ids in chosen.items()}


def read_lexicon(path: str | Path) -> dict[str, list[str]]:
    """``WORD PH1 PH2 ...`` per line (first pronunciation wins); ARPAbet stress digits removed (AH0 -> AH)."""
    path = Path(path)
    lexicon: dict[str, list[str]] = {}
    for number, line in enumerate(_require(path, "lexicon").read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields or line.startswith(";;;"):
            continue
        if len(fields) < 2:
            raise DataError("expected 'WORD PHONE ...'", path, number)
        word = re.sub(r"\(\d+\)$", "", fields[0]).upper()  # CMUdict's WORD(2) variants
        lexicon.setdefault(word, [re.sub(r"\d$", "", p) for p in fields[1:]])
    return lexicon


def add_phones(data_dir: str | Path, lexicon: str | Path) -> tuple[Path, int]:
    """Write ``text.phn`` for every utterance of ``data_dir`` whose words are all in the lexicon.

    Utterances with an out-of-lexicon word are dropped from the data dir (all tables), as a
    phone recogniser cannot be scored on them; returns (the dir, how many were dropped).
    """
    from audiossl.data.subset import subset

    data_dir = Path(data_dir)
    data = DataDir.load(data_dir)
    if data.text is None:
        raise DataError("phones come from the transcripts: text is missing", data_dir / "text")
    words = read_lexicon(lexicon)
    phones = {}
    for utt in data.utterance_ids:
        tokens = data.text[utt].upper().split()
        if tokens and all(t in words for t in tokens):
            phones[utt] = " ".join(p for t in tokens for p in words[t])
    if not phones:
        raise DataError(f"no transcript of {data_dir} is covered by the lexicon", Path(lexicon))
    dropped = len(data.utterance_ids) - len(phones)
    if dropped:
        subset(data, phones).save(data_dir)
    write_table(data_dir / "text.phn", phones)
    return data_dir, dropped


def _english(lst: Path, root: Path) -> list[Path]:
    paths = []
    for number, line in enumerate(lst.read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) != 2:
            raise DataError("expected '<audio path> <language>'", lst, number)
        if fields[1] == "nnenglish":
            paths.append(root / re.sub(r"^[^/]*/", "", fields[0]))  # paths start with the release folder
    return paths


def prepare_quesst14(root: str | Path, out: str | Path) -> dict[str, Path]:
    """QbE documents (``OUT/docs``, text = ids of the queries each contains) and ``OUT/{dev,eval}_queries.txt``."""
    root, out = Path(root), Path(out)
    scoring = _require(root / "scoring", "QUESST 2014")
    documents = _english(_require(scoring / "language_key_utterances.lst", "QUESST 2014"), root)
    contains: dict[str, set[str]] = {}
    made: dict[str, Path] = {}
    for name in ("dev", "eval"):
        queries = _english(_require(scoring / f"language_key_{name}.lst", "QUESST 2014"), root)
        rttm = _require(scoring / f"groundtruth_quesst14_{name}" / f"quesst14_{name}.rttm", "QUESST 2014")
        for line in rttm.read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == "LEXEME":
                query = next((f for f in fields[2:] if f.startswith(f"quesst14_{name}_")), None)
                if query is not None:
                    contains.setdefault(fields[1], set()).add(query)
        listing = out / f"{name}_queries.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(listing) as handle:
            for path in queries:
                if not path.is_file():
                    raise DataError(f"query audio missing: {path}", scoring / f"language_key_{name}.lst")
                handle.write(f"{path.stem} {path.stem} {path.resolve()}\n")
        made[f"{name}_queries"] = listing
    data = new_data_dir(text=True)
    for path in documents:
        if not path.is_file():
            raise DataError(f"document audio missing: {path}", scoring / "language_key_utterances.lst")
        add_utterance(data, path.stem, path, path.stem)
        data.text[path.stem] = " ".join(sorted(contains.get(path.stem, ()))) or "-"
    made["docs"] = _save(data, out / "docs")
    return made


def prepare_voicebank_demand(root: str | Path, out: str | Path, sample_rate: int = 16000) -> dict[str, Path]:
    """SE train/test pair dirs (wav.scp noisy, utt2clean clean) from Voicebank-DEMAND, through the enhance plugin."""
    try:
        from audiossl_enhance.mixtures import pair_dirs
    except ImportError:
        raise DataError("Voicebank-DEMAND pairs need the enhance plugin (pip install -e plugins/enhance)") from None
    root, out = Path(root), Path(out)
    made = {}
    for part, folder in (("train", "trainset_28spk"), ("test", "testset")):
        dirs = {}
        for kind in ("clean", "noisy"):
            source = _require(root / f"{kind}_{folder}_wav", "Voicebank-DEMAND")
            data = new_data_dir()
            for wav in visible(source.glob("*.wav")):
                add_utterance(data, wav.stem, wav, wav.stem.split("_")[0])
            dirs[kind] = _save(data, out / "raw" / f"{kind}_{part}")
        pair_dirs(dirs["clean"], dirs["noisy"], out / part, sample_rate=sample_rate)
        made[part] = out / part
    return made


def prepare_libri2mix(
    root: str | Path,
    out: str | Path,
    rate: str = "16k",
    mode: str = "min",
    parts: Iterable[str] = ("train-100", "dev", "test"),
) -> dict[str, Path]:
    """SS dirs (wav.scp mixture, utt2src1/utt2src2 sources, utt2spk/utt2spk2) from Libri2Mix's mix_clean."""
    root, out = Path(root), Path(out)
    if (root / "Libri2Mix").is_dir():
        root = root / "Libri2Mix"
    made = {}
    for part in parts:
        folder = _require(root / f"wav{rate}" / mode / part, "Libri2Mix")
        data = new_data_dir(labels=("src1", "src2", "spk2"))
        for wav in visible((_require(folder / "mix_clean", "Libri2Mix")).glob("*.wav")):
            first, _, second = wav.stem.partition("_")
            if not second:
                raise DataError("expected a mixture id '<spk>-<chapter>-<n>_<spk>-<chapter>-<n>'", wav)
            sources = [folder / s / wav.name for s in ("s1", "s2")]
            for source in sources:
                _require(source, "Libri2Mix")
            add_utterance(data, wav.stem, wav, first.split("-")[0])
            data.labels["src1"][wav.stem], data.labels["src2"][wav.stem] = (str(s.resolve()) for s in sources)
            data.labels["spk2"][wav.stem] = second.split("-")[0]
        name = {"train-100": "train", "train-360": "train360"}.get(part, part)
        made[name] = _save(data, out / name)
    return made


def add_to_data_config(path: str | Path, entries: dict[str, dict[str, Any]]) -> Path:
    """Add (or replace) task entries of a data config, keeping the others; paths are written as given."""
    path = Path(path)
    tasks: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        tasks = dict(loaded.get("tasks") or {})
    tasks.update(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write("# audiossl superb data config (written by `audiossl superb prepare ...`)\n")
        yaml.safe_dump({"tasks": tasks}, handle, sort_keys=False)
    return path


__all__ = [
    "COMMANDS",
    "add_phones",
    "add_to_data_config",
    "prepare_fluent_speech_commands",
    "prepare_libri2mix",
    "prepare_quesst14",
    "prepare_speech_commands",
    "prepare_voicebank_demand",
    "prepare_voxceleb1_sid",
    "read_lexicon",
]
