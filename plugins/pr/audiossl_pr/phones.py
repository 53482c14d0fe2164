"""Phone transcripts of a data dir: its ``text.phn``, or its ``text`` through a lexicon; the phone inventory.

* ``text.phn``: Kaldi table ``<utt> <phone> <phone> ...`` (what SUPERB's PR reads, and what the
  synthetic corpus and ``data prepare-fsdd`` write).
* ``lexicon.txt``: Kaldi lexicon ``<word> <phone> <phone> ...``, one pronunciation per word
  (a second, different line for a word is an error: PR needs one reference per utterance).
  Words of ``text`` are looked up as written, then lower-cased.

Every error names the file and line: a line without phones, a duplicate entry, a word the
lexicon lacks (named at its line of ``text``), an utterance without phones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from audiossl.data.kaldi import read_entries
from audiossl.errors import DataError

#: The phone transcripts of a data dir.
PHONES_FILE = "text.phn"
#: The lexicon a data dir may carry.
LEXICON_FILE = "lexicon.txt"
#: CTC blank, id 0.
BLANK = "<blank>"
#: Phones never seen in training, at the last id.
UNKNOWN = "<unk>"


def read_lexicon(path: str | Path) -> dict[str, list[str]]:
    """``{word: [phone, ...]}`` of a Kaldi lexicon; a word with two different pronunciations is an error."""
    path = Path(path)
    lexicon: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for entry in read_entries(path):  # empty lines skipped; a word without phones is an error at its line
        phones = entry.value.split()
        if entry.key in lexicon and lexicon[entry.key] != phones:
            raise DataError(
                f"word {entry.key!r} has a second pronunciation (first on line {first[entry.key]}); "
                "phone recognition needs one reference per word",
                path,
                entry.line,
            )
        lexicon[entry.key] = phones
        first.setdefault(entry.key, entry.line)
    if not lexicon:
        raise DataError("lexicon is empty", path)
    return lexicon


def read_phone_table(path: str | Path) -> dict[str, list[str]]:
    """``{utt: [phone, ...]}`` of a ``text.phn`` table (an utterance without phones is an error at its line)."""
    path = Path(path)
    table: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for entry in read_entries(path):
        if entry.key in table:
            raise DataError(f"duplicate utterance {entry.key!r} (first on line {lines[entry.key]})", path, entry.line)
        table[entry.key] = entry.value.split()
        lines[entry.key] = entry.line
    return table


def phones_from_text(
    text_path: str | Path, lexicon: Mapping[str, Sequence[str]], lexicon_name: str
) -> dict[str, list[str]]:
    """``{utt: phones}`` of a Kaldi ``text`` file, every word replaced by its lexicon pronunciation."""
    text_path = Path(text_path)
    table: dict[str, list[str]] = {}
    for entry in read_entries(text_path):
        phones: list[str] = []
        for word in entry.value.split():
            pronunciation = lexicon.get(word, lexicon.get(word.lower()))
            if pronunciation is None:
                raise DataError(f"word {word!r} is not in the lexicon ({lexicon_name})", text_path, entry.line)
            phones.extend(pronunciation)
        table[entry.key] = phones
    return table


@dataclass(frozen=True)
class PhoneSet:
    """Phone inventory: ``<blank>`` (id 0), the training phones in sorted order, ``<unk>`` (last id)."""

    phones: tuple[str, ...]

    @classmethod
    def from_transcripts(cls, transcripts: Iterable[Sequence[str]]) -> PhoneSet:
        return cls(tuple(sorted({phone for phones in transcripts for phone in phones})))

    @property
    def units(self) -> list[str]:
        """Every unit by id."""
        return [BLANK, *self.phones, UNKNOWN]

    @property
    def blank(self) -> int:
        return 0

    @property
    def unk(self) -> int:
        return len(self.phones) + 1

    @property
    def vocab_size(self) -> int:
        return len(self.phones) + 2

    def encode(self, phones: Sequence[str]) -> list[int]:
        """Unit ids of phones (unknown phones map to ``<unk>``)."""
        index = {phone: i + 1 for i, phone in enumerate(self.phones)}
        return [index.get(phone, self.unk) for phone in phones]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Phones of unit ids (blank dropped; collapse repeats before calling, as CTC decoding does)."""
        units = self.units
        return [units[i] for i in ids if i != self.blank]


def data_dir_phones(
    data_dir: str | Path, lexicon: Mapping[str, Sequence[str]] | None = None, lexicon_name: str = "lexicon"
) -> tuple[dict[str, list[str]], str]:
    """The phone transcripts of ``data_dir`` and where they came from.

    With a ``lexicon`` (the user's ``--lexicon``): ``text`` through it. Without: ``text.phn``,
    else ``text`` through the dir's own ``lexicon.txt``; neither is a DataError naming the dir.
    """
    data_dir = Path(data_dir)
    if lexicon is not None:
        return phones_from_text(data_dir / "text", lexicon, lexicon_name), f"text through {lexicon_name}"
    if (data_dir / PHONES_FILE).is_file():
        return read_phone_table(data_dir / PHONES_FILE), str(data_dir / PHONES_FILE)
    if (data_dir / LEXICON_FILE).is_file() and (data_dir / "text").is_file():
        own = data_dir / LEXICON_FILE
        return phones_from_text(data_dir / "text", read_lexicon(own), str(own)), f"text through {own}"
    raise DataError(
        f"no phone transcripts: expected {PHONES_FILE}, or text with {LEXICON_FILE} (or give --lexicon FILE)", data_dir
    )
