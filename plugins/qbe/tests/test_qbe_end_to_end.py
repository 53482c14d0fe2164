"""`audiossl qbe evaluate` on the synthetic corpus: queries cut by the alignments, outputs, bad queries exit 2."""

from __future__ import annotations

import json

import pytest

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir
from audiossl.data.subset import subset
from audiossl.data.synth import SynthConfig, synthesize_corpus
from audiossl.superb.datasets import save_part


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("qbe")
    synthesize_corpus(root / "all", SynthConfig(speakers=2, utts_per_speaker=4, seed=1))
    data = DataDir.load(root / "all")
    queries = [u for u in data.utterance_ids if u.startswith("spk01")]
    documents = [u for u in data.utterance_ids if not u.startswith("spk01")]
    save_part(subset(data, queries), root / "all", root / "queries")
    save_part(subset(data, documents), root / "all", root / "docs")
    return root


def test_evaluate_writes_every_output(dirs, capsys):
    out = dirs / "out"
    status = main(
        ["qbe", "evaluate", str(dirs / "docs"), "--queries-from", str(dirs / "queries"), "-u", "fbank", "-o", str(out)]
    )
    assert status == 0
    report = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= report["metrics"]["MAP"] <= 1.0 and report["metrics"]["MTWV"] <= 1.0
    assert report["twv"]["beta"] == pytest.approx(12.49)
    lines = (out / "scores.txt").read_text().splitlines()
    docs = DataDir.load(dirs / "docs")
    assert len(lines) == report["terms"] * len(docs.utterance_ids)
    for line in lines:  # the truth column is the documents' text
        term, doc, _, truth = line.split()
        assert int(truth) == (term in docs.text[doc].split())
    assert (out / "layers.png").read_bytes()[:4] == b"\x89PNG"


def test_a_query_whose_term_is_in_no_document_is_exit_2(dirs, capsys, tmp_path):
    word_audio = DataDir.load(dirs / "queries").wav_scp
    first = sorted(word_audio)[0]
    listing = tmp_path / "queries.txt"
    listing.write_text(f"q1 sun {word_audio[first]} 0.1 0.5\nq2 zebra {word_audio[first]} 0.1 0.5\n")
    docs_words = {w for t in DataDir.load(dirs / "docs").text.values() for w in t.split()}
    if "sun" not in docs_words:
        listing.write_text(listing.read_text().replace(" sun ", f" {sorted(docs_words)[0]} "))
    status = main(
        ["qbe", "evaluate", str(dirs / "docs"), "--queries", str(listing), "-u", "fbank", "-o", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert status == 2 and "queries not found in any document: q2 ('zebra'" in err and f"{listing}:2" in err


def test_query_list_errors_name_the_line(dirs, capsys, tmp_path):
    listing = tmp_path / "queries.txt"
    listing.write_text("q1 sun /nowhere.wav\n")
    status = main(
        ["qbe", "evaluate", str(dirs / "docs"), "--queries", str(listing), "-u", "fbank", "-o", str(tmp_path / "o")]
    )
    assert status == 2 and f"{listing}:1" in capsys.readouterr().err
