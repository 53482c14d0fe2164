"""Tokenizers: round trips, the blank at 0, saving, and the errors users can hit."""

from __future__ import annotations

import pytest

from audiossl.errors import ConfigError, DataError
from audiossl_asr.tokenizer import BLANK, UNK, Tokenizer, read_transcripts, train_tokenizer

SENTENCES = ["sun moon tea", "key lemon rose", "wolf fish snow", "kite rain lime"]
TEXTS = {f"u{i}": text for i, text in enumerate(SENTENCES * 5)}


def test_char_units_and_round_trip():
    tokenizer = train_tokenizer(TEXTS, "char")
    assert tokenizer.units[:3] == [BLANK, UNK, "|"]
    assert tokenizer.blank == 0 and tokenizer.vocab_size == len(set("".join(TEXTS.values())) - {" "}) + 3
    ids = tokenizer.encode("sun  moon")
    assert 0 not in ids
    assert [tokenizer.units[i] for i in ids] == list("sun|moon|")
    assert tokenizer.decode(ids) == "sun moon"
    assert tokenizer.encode("sux") == [tokenizer.units.index("s"), tokenizer.units.index("u"), tokenizer.unk, 2]
    assert tokenizer.spell("tea") == ["t", "e", "a", "|"]


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_sentencepiece_round_trip_and_reload(kind, tmp_path):
    tokenizer = train_tokenizer(TEXTS, kind, vocab_size=24)
    assert tokenizer.vocab_size == 24
    assert tokenizer.units[:2] == [BLANK, UNK]
    for text in TEXTS.values():
        ids = tokenizer.encode(text)
        assert 0 not in ids and tokenizer.unk not in ids
        assert tokenizer.decode(ids) == text
    # Every word spells on its own as it does inside a sentence (what a lexicon relies on).
    words = "wolf fish snow".split()
    in_sentence = [tokenizer.units[i] for i in tokenizer.encode(" ".join(words))]
    assert sum((tokenizer.spell(w) for w in words), []) == in_sentence
    tokenizer.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.kind == kind and again.units == tokenizer.units
    assert again.encode("lemon rose") == tokenizer.encode("lemon rose")


def test_char_tokenizer_reloads(tmp_path):
    tokenizer = train_tokenizer(TEXTS, "char")
    tokenizer.save(tmp_path / "run")
    assert Tokenizer.load(tmp_path / "run").units == tokenizer.units


def test_decode_drops_blanks_and_keeps_repeats():
    tokenizer = Tokenizer("char", units=[BLANK, UNK, "|", "a", "b"])
    assert tokenizer.decode([0, 3, 3, 0, 2, 2, 4, 0]) == "aa b"


def test_vocab_size_too_large_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"vocab_size 500 is too large .* at most \d+") as error:
        train_tokenizer(TEXTS, "bpe", vocab_size=500, source=tmp_path / "text")
    assert error.value.path == str(tmp_path / "text")


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="wordpiece"):
        train_tokenizer(TEXTS, "wordpiece")


def test_empty_transcript_names_file_and_line(tmp_path):
    path = tmp_path / "text"
    path.write_text("u1 sun moon\nu2\nu3 tea\n", encoding="utf-8")
    with pytest.raises(DataError, match="u2") as error:
        read_transcripts(path)
    assert (error.value.path, error.value.line) == (str(path), 2)
    path.write_text("u1 sun   moon\nu3 tea\n", encoding="utf-8")
    assert read_transcripts(path) == {"u1": "sun moon", "u3": "tea"}


def test_load_without_tokenizer_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="tokenizer") as error:
        Tokenizer.load(tmp_path)
    assert error.value.path.endswith("tokenizer.json")
