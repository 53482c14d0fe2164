"""Translations of a data dir: ``text.<lang>`` tables, and the synthetic corpus's second language.

A speech-translation data dir keeps its target-language sentences beside ``text`` in a Kaldi
table named ``text.<lang>`` (``<utt> <words>``), one per language (the layout of Kaldi/ESPnet ST
recipes such as MuST-C's ``text.tc.de``). :func:`read_translations` reads any such table and
checks its ids against ``wav.scp``.

The embedded synthetic corpus (:mod:`audiossl.data.synth`) gets a deterministic second
language, code ``qaa`` (the first of ISO 639-2's codes reserved for local use): every lexicon
word has a fixed target word (``tomato`` two of them), and the target order swaps neighbouring
source words pairwise (``a b c d e`` -> ``B A D C E``), so a translation model has to reorder
as well as map words, and word-by-word transcription then mapping does not score full BLEU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from audiossl.data.kaldi import read_entries, read_table, write_table
from audiossl.errors import DataError

#: Language code of the synthetic corpus's second language (ISO 639-2 local-use range).
SYNTH_LANGUAGE = "qaa"

#: Source word -> target words of the synthetic second language (one entry per lexicon word).
SYNTH_LEXICON: dict[str, tuple[str, ...]] = {
    "sun": ("sol",),
    "moon": ("lunu",),
    "tea": ("chai",),
    "key": ("klavo",),
    "lemon": ("limo",),
    "rose": ("roza",),
    "wolf": ("lupo",),
    "fish": ("pesko",),
    "snow": ("nevi",),
    "kite": ("drako",),
    "rain": ("pluvo",),
    "lime": ("lima",),
    "seal": ("foko",),
    "wine": ("vino",),
    "ship": ("navo",),
    "tomato": ("poma", "dora"),
}


def translation_file(data_dir: str | Path, lang: str) -> Path:
    """The table holding ``lang`` translations in ``data_dir``: ``text.<lang>``."""
    if not lang or any(c.isspace() or c in "/\\" for c in lang):
        raise DataError(f"bad language code {lang!r}: expected a name such as 'de' or 'qaa'")
    return Path(data_dir) / f"text.{lang}"


#: ``text.<suffix>`` tables that are not a language: phone transcripts (``text.phn``, phoneme recognition).
NOT_LANGUAGES = frozenset({"phn"})


def text_tables(data_dir: str | Path) -> list[str]:
    """Suffixes of every ``text.<suffix>`` table in ``data_dir`` (translations and phones), sorted."""
    return sorted(path.name[len("text.") :] for path in Path(data_dir).glob("text.*") if path.is_file())


def available_languages(data_dir: str | Path) -> list[str]:
    """Languages with a ``text.<lang>`` table in ``data_dir``, sorted (``text.phn`` phones are not one)."""
    return [suffix for suffix in text_tables(data_dir) if suffix not in NOT_LANGUAGES]


def translate_synthetic(words: Sequence[str]) -> list[str]:
    """The synthetic second language of a sentence of lexicon words (neighbours swapped pairwise, then mapped)."""
    unknown = [word for word in words if word not in SYNTH_LEXICON]
    if unknown:
        raise ValueError(f"word(s) outside the synthetic lexicon: {', '.join(sorted(set(unknown)))}")
    order = list(words)
    for start in range(0, len(order) - 1, 2):
        order[start], order[start + 1] = order[start + 1], order[start]
    return [target for word in order for target in SYNTH_LEXICON[word]]


def write_synthetic_translations(data_dir: str | Path, text: Mapping[str, str]) -> Path:
    """Write ``text.qaa`` (the synthetic second language of every transcript in ``text``) atomically."""
    table = {utt: " ".join(translate_synthetic(words.split())) for utt, words in text.items()}
    path = translation_file(data_dir, SYNTH_LANGUAGE)
    write_table(path, table)
    return path


def read_translations(data_dir: str | Path, lang: str) -> dict[str, str]:
    """Translations ``utt -> words`` of every utterance of ``data_dir`` from ``text.<lang>``.

    The table must cover exactly the utterances of ``wav.scp``: an id ``wav.scp`` lacks, a
    duplicate or an empty translation is a DataError at its line; utterances without a
    translation are a DataError naming them. Whitespace is normalised.
    """
    data_dir = Path(data_dir)
    path = translation_file(data_dir, lang)
    if not path.is_file():
        found = available_languages(data_dir)
        hint = f" (this dir has: {', '.join(found)})" if found else " (this dir has no text.<lang> table)"
        raise DataError(f"no {lang!r} translations{hint}", path)
    utterances = read_table(data_dir / "wav.scp")
    translations: dict[str, str] = {}
    for entry in read_entries(path, allow_empty_value=True):
        if entry.key not in utterances:
            raise DataError(f"utterance {entry.key!r} is not in {data_dir / 'wav.scp'}", path, entry.line)
        if entry.key in translations:
            raise DataError(f"duplicate id {entry.key!r}", path, entry.line)
        words = entry.value.split()
        if not words:
            raise DataError(f"utterance {entry.key!r} has an empty translation", path, entry.line)
        translations[entry.key] = " ".join(words)
    missing = [utt for utt in utterances if utt not in translations]
    if missing:
        shown = ", ".join(repr(utt) for utt in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{len(missing)} utterance(s) of wav.scp have no translation: {shown}{more}", path)
    return translations


def carry_translations(source_dir: str | Path, part_dirs: Sequence[str | Path]) -> list[Path]:
    """Copy every ``text.<suffix>`` of ``source_dir`` (translations, phones) into each part, filtered to its utterances.

    ``data split`` and ``data subset`` call this, so translations follow their utterances into
    train/test parts. Returns the tables written.
    """
    written = []
    for lang in text_tables(source_dir):
        table = read_table(translation_file(source_dir, lang), allow_empty_value=True)
        for part in part_dirs:
            utterances = read_table(Path(part) / "wav.scp")
            path = translation_file(part, lang)
            write_table(path, {utt: words for utt, words in table.items() if utt in utterances})
            written.append(path)
    return written
