"""Free Spoken Digit Dataset (FSDD) -> Kaldi data dirs.

FSDD (Zohar Jackson and contributors, CC BY-SA 4.0) is a folder of short 8 kHz recordings
named ``{digit}_{speaker}_{take}.wav``. Its official split puts takes 0-4 of every digit
and speaker in the test set and takes 5 and up in train.

Utterance ids are ``{speaker}-{digit}-{take:02d}`` (``jackson-7-32``): prefixed by the
speaker, so sorting by utterance id also groups and orders the speakers, which Kaldi
requires of utt2spk and spk2utt. The separator is ``-`` because it sorts before every
letter and digit: speaker ``theo``'s ``theo-...`` stays before speaker ``theo2``'s
``theo2-...`` in byte order, whereas ``_`` sorts after digits and capitals and would put
``theo2_...`` first. Takes are zero-padded to two digits so that ids sort by take.
"""

from __future__ import annotations

import re
from pathlib import Path

import soundfile as sf

from audiossl.data.kaldi import DataDir, write_table
from audiossl.errors import AudioError, DataError
from audiossl.fileio import atomic_write

#: Spoken form of each digit, the transcript written to ``text``.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Pronunciation of each digit word: our own ARPAbet-like transcription (lower case, no stress marks),
#: written as ``lexicon.txt`` and, per utterance, ``text.phn`` for phoneme recognition.
DIGIT_PHONES: dict[str, tuple[str, ...]] = {
    "zero": ("z", "ih", "r", "ow"),
    "one": ("w", "ah", "n"),
    "two": ("t", "uw"),
    "three": ("th", "r", "iy"),
    "four": ("f", "ao", "r"),
    "five": ("f", "ay", "v"),
    "six": ("s", "ih", "k", "s"),
    "seven": ("s", "eh", "v", "ah", "n"),
    "eight": ("ey", "t"),
    "nine": ("n", "ay", "n"),
}

#: Takes below this number form the official test split.
TEST_TAKES = 5

_NAME = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<take>[0-9]+)\.wav")


def prepare_fsdd(recordings_dir: str | Path, out_dir: str | Path) -> dict[str, DataDir]:
    """Write ``out_dir/train`` and ``out_dir/test`` Kaldi data dirs from FSDD recordings.

    Each dir gets wav.scp (absolute resolved paths), utt2spk, spk2utt, text (the digit as
    a word), utt2digit (the digit 0-9, for classification), utt2dur and utt2num_samples
    (from the wav headers; no audio is decoded), words.txt (the ten digit words, for
    lexicon decoding), lexicon.txt (each word's phones, :data:`DIGIT_PHONES`) and text.phn
    (each utterance's phones, for phoneme recognition). Hidden files (``.DS_Store``...) and
    sub-folders are ignored; any other file not named ``{digit}_{speaker}_{take}.wav`` is
    an error, because it means the folder is not what the user thinks it is.
    """
    recordings_dir = Path(recordings_dir)
    if not recordings_dir.is_dir():
        raise DataError("FSDD recordings folder not found", recordings_dir)
    splits = {"train": _empty(), "test": _empty()}
    files = sorted(p for p in recordings_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError("no FSDD recordings ({digit}_{speaker}_{take}.wav) in this folder", recordings_dir)
    sources: dict[str, Path] = {}
    for path in files:
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise DataError(
                "not an FSDD recording name: expected {digit}_{speaker}_{take}.wav (e.g. 7_jackson_32.wav)", path
            )
        digit, speaker, take = int(match["digit"]), match["speaker"], int(match["take"])
        try:
            info = sf.info(str(path))
        except (RuntimeError, OSError) as error:
            raise AudioError(f"cannot read the wav header: {error}", path) from None
        if info.frames <= 0:
            raise AudioError("recording is empty", path)
        utt = f"{speaker}-{digit}-{take:02d}"
        if utt in sources:
            raise DataError(f"same digit, speaker and take as {sources[utt].name} (utterance {utt!r})", path)
        sources[utt] = path
        data = splits["test" if take < TEST_TAKES else "train"]
        data.wav_scp[utt] = str(path.resolve())
        data.utt2spk[utt] = speaker
        data.text[utt] = DIGIT_WORDS[digit]
        data.labels["digit"][utt] = str(digit)
        data.utt2dur[utt] = info.frames / info.samplerate
        data.utt2num_samples[utt] = info.frames
    for split, data in splits.items():
        if not data.wav_scp:
            takes = f"0-{TEST_TAKES - 1}" if split == "test" else f"{TEST_TAKES} or more"
            raise DataError(f"no recordings for the {split} split (takes {takes}) in this folder", recordings_dir)
    out_dir = Path(out_dir)
    for split, data in splits.items():
        data.save(out_dir / split)
        with atomic_write(out_dir / split / "words.txt") as handle:  # the vocabulary, for lexicon decoding
            handle.write("".join(f"{word}\n" for word in DIGIT_WORDS))
        with atomic_write(out_dir / split / "lexicon.txt") as handle:  # word -> phones (Kaldi lexicon.txt)
            handle.write("".join(f"{word} {' '.join(DIGIT_PHONES[word])}\n" for word in DIGIT_WORDS))
        phones = {utt: " ".join(DIGIT_PHONES[word]) for utt, word in data.text.items()}
        write_table(out_dir / split / "text.phn", phones)  # per-utterance phones (SUPERB PR)
    return splits


def _empty() -> DataDir:
    return DataDir(text={}, utt2dur={}, utt2num_samples={}, labels={"digit": {}})
