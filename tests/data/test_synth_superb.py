"""The synthetic corpus' SUPERB additions agree with its text, lexicon and audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiossl.data.kaldi import DataDir, read_table
from audiossl.data.synth import GROUP_ACTIONS, LEXICON, WORD_GROUPS, SynthConfig, read_ctm, synthesize_corpus
from audiossl.errors import DataError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=4, seed=3))
    return out


def test_phones_are_the_lexicon_spelling_of_the_words(corpus):
    lexicon = {}
    for line in (corpus / "lexicon.txt").read_text().splitlines():  # read the file, not the module's table
        word, *phones = line.split()
        lexicon[word] = phones
    text, phn = read_table(corpus / "text"), read_table(corpus / "text.phn")
    assert text.keys() == phn.keys()
    for utt, words in text.items():
        assert phn[utt].split() == [p for w in words.split() for p in lexicon[w]]


def test_word_alignments_follow_the_text_and_lie_inside_the_audio(corpus):
    data = DataDir.load(corpus)
    words, phones = read_ctm(corpus / "words.ctm"), read_ctm(corpus / "phones.ctm")
    assert set(words) == set(data.utterance_ids)
    for utt in data.utterance_ids:
        assert [w for w, _, _ in words[utt]] == data.text[utt].split()
        assert [p for p, _, _ in phones[utt]] == read_table(corpus / "text.phn")[utt].split()
        ends = [0.0]
        for _, start, end in words[utt]:
            assert ends[-1] <= start < end <= data.utt2dur[utt]  # in order, no overlap, inside the file
            ends.append(end)
        # every word spans exactly its phones
        at = 0
        for word, start, end in words[utt]:
            count = len(next(w for w in LEXICON if w.spelling == word).phones)
            span = phones[utt][at : at + count]
            assert span[0][1] == pytest.approx(start, abs=2e-3) and span[-1][2] == pytest.approx(end, abs=2e-3)
            at += count


def test_aligned_words_are_where_the_energy_is(corpus):
    data = DataDir.load(corpus)
    words = read_ctm(corpus / "words.ctm")
    for utt in data.utterance_ids:
        audio, rate = sf.read(data.wav_scp[utt])
        inside, near = np.zeros(len(audio), dtype=bool), np.zeros(len(audio), dtype=bool)
        margin = int(0.05 * rate)  # resonators ring on for a few tens of ms after a word
        for _, start, end in words[utt]:
            inside[int(start * rate) : int(end * rate)] = True
            near[max(0, int(start * rate) - margin) : int(end * rate) + margin] = True
        speech = np.sqrt(np.mean(audio[inside] ** 2))
        silence = np.sqrt(np.mean(audio[~near] ** 2))
        assert speech > 10 * silence  # >20 dB between the aligned words and the rest


def test_intent_and_keyword_come_from_the_words(corpus):
    text = read_table(corpus / "text")
    intents, keywords = read_table(corpus / "utt2intent"), read_table(corpus / "utt2kw")
    for utt, line in text.items():
        words = line.split()
        action, thing = intents[utt].split("_")
        assert GROUP_ACTIONS[WORD_GROUPS[words[0]]] == action and WORD_GROUPS[words[-1]] == thing
        assert keywords[utt] == words[0]
    assert set(WORD_GROUPS) == {w.spelling for w in LEXICON}


def test_existing_tables_do_not_change(tmp_path):
    """The additions are new files: text, utt2emo, wav.scp and the audio are as before (same config, same bytes)."""
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize_corpus(a, SynthConfig(speakers=1, utts_per_speaker=2))
    synthesize_corpus(b, SynthConfig(speakers=1, utts_per_speaker=2))
    for name in ("text", "utt2emo", "utt2dur", "words.ctm", "text.phn"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_bad_ctm_line_names_file_and_line(tmp_path):
    path = tmp_path / "words.ctm"
    path.write_text("u1 1 0.1 0.2 sun\nu1 1 zero 0.2 moon\n")
    with pytest.raises(DataError, match=r"words.ctm:2"):
        read_ctm(path)


def test_cli_one_word_per_utterance(tmp_path):
    from typer.testing import CliRunner

    from audiossl.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "data",
            "synth",
            str(tmp_path / "kw"),
            "--speakers",
            "1",
            "--utts-per-speaker",
            "3",
            "--words-per-utt",
            "1",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    text, keywords = read_table(tmp_path / "kw" / "text"), read_table(tmp_path / "kw" / "utt2kw")
    assert all(len(line.split()) == 1 and keywords[u] == line for u, line in text.items())
