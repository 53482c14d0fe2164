"""Translations (``text.<lang>``): the synthetic second language, reading with id checks, splits carrying them."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.cli.main import main
from audiossl.data.kaldi import read_table
from audiossl.data.synth import LEXICON, SynthConfig, synthesize_corpus
from audiossl.data.translation import (
    SYNTH_LANGUAGE,
    SYNTH_LEXICON,
    available_languages,
    read_translations,
    translate_synthetic,
)
from audiossl.errors import DataError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("translation") / "corpus"
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=6, seed=5))
    return out


def test_every_lexicon_word_has_a_target() -> None:
    assert set(SYNTH_LEXICON) == {word.spelling for word in LEXICON}
    targets = [t for words in SYNTH_LEXICON.values() for t in words]
    assert len(targets) == len(set(targets)), "two source words share a target word"


def test_synthetic_language_swaps_neighbours_then_maps() -> None:
    # written out by hand from the rule in the module docstring
    assert translate_synthetic(["sun"]) == ["sol"]
    assert translate_synthetic(["sun", "moon"]) == ["lunu", "sol"]
    assert translate_synthetic(["sun", "moon", "tea"]) == ["lunu", "sol", "chai"]
    assert translate_synthetic(["tomato", "key", "fish", "wine", "seal"]) == [
        "klavo",
        "poma",
        "dora",
        "vino",
        "pesko",
        "foko",
    ]
    with pytest.raises(ValueError, match="outside the synthetic lexicon"):
        translate_synthetic(["sun", "zebra"])


def test_synth_writes_the_translation_of_every_transcript(corpus: Path) -> None:
    assert available_languages(corpus) == [SYNTH_LANGUAGE]
    text = read_table(corpus / "text")
    translations = read_translations(corpus, SYNTH_LANGUAGE)
    assert list(translations) == list(text)
    for utt, words in text.items():
        assert translations[utt] == " ".join(translate_synthetic(words.split()))
    reordered = [utt for utt, words in text.items() if len(words.split()) > 1]
    assert reordered, "the corpus has multi-word sentences to reorder"


def _copy(corpus: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("wav.scp", "text", f"text.{SYNTH_LANGUAGE}"):
        (dest / name).write_bytes((corpus / name).read_bytes())
    return dest


def test_an_id_not_in_wav_scp_is_named_with_its_line(corpus: Path, tmp_path: Path) -> None:
    data = _copy(corpus, tmp_path / "d")
    path = data / f"text.{SYNTH_LANGUAGE}"
    path.write_text(path.read_text() + "ghost-0001 sol\n")
    lines = len(path.read_text().splitlines())
    with pytest.raises(DataError, match="'ghost-0001' is not in") as caught:
        read_translations(data, SYNTH_LANGUAGE)
    assert caught.value.line == lines and caught.value.path == str(path)


def test_missing_translation_and_missing_language_are_errors(corpus: Path, tmp_path: Path) -> None:
    data = _copy(corpus, tmp_path / "d")
    path = data / f"text.{SYNTH_LANGUAGE}"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(DataError, match="1 utterance\\(s\\) of wav.scp have no translation"):
        read_translations(data, SYNTH_LANGUAGE)
    with pytest.raises(DataError, match="no 'de' translations \\(this dir has: qaa\\)"):
        read_translations(data, "de")


def test_empty_translation_is_named(corpus: Path, tmp_path: Path) -> None:
    data = _copy(corpus, tmp_path / "d")
    path = data / f"text.{SYNTH_LANGUAGE}"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].split()[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="empty translation") as caught:
        read_translations(data, SYNTH_LANGUAGE)
    assert caught.value.line == 3


def test_split_and_subset_carry_translations(corpus: Path, tmp_path: Path) -> None:
    assert main(["data", "split", str(corpus), str(tmp_path / "parts"), "--parts", "train=0.5,test=0.5"]) == 0
    assert main(["data", "subset", str(corpus), str(tmp_path / "small"), "--utts-per-speaker", "2"]) == 0
    full = read_table(corpus / f"text.{SYNTH_LANGUAGE}")
    for part in (tmp_path / "parts" / "train", tmp_path / "parts" / "test", tmp_path / "small"):
        translations = read_translations(part, SYNTH_LANGUAGE)  # covers exactly the part's wav.scp
        assert translations == {utt: full[utt] for utt in read_table(part / "wav.scp")}


def test_phone_transcripts_are_not_a_language_but_follow_their_utterances(corpus: Path, tmp_path: Path) -> None:
    from audiossl.data.translation import carry_translations

    assert (corpus / "text.phn").is_file()  # the synthetic corpus writes phones for phoneme recognition
    assert "phn" not in available_languages(corpus)
    part = tmp_path / "part"
    part.mkdir()
    kept = list(read_table(corpus / "wav.scp").items())[:3]
    (part / "wav.scp").write_text("".join(f"{utt} {path}\n" for utt, path in kept), encoding="utf-8")
    carry_translations(corpus, [part])
    phones = read_table(corpus / "text.phn")
    assert read_table(part / "text.phn") == {utt: phones[utt] for utt, _ in kept}
    assert list(read_table(part / f"text.{SYNTH_LANGUAGE}")) == [utt for utt, _ in kept]
