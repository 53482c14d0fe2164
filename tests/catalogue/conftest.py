"""Session fixtures of the bad-input catalogue: a tiny clean corpus and a tiny pretrained run on it.

Every case copies the clean corpus into its own ``tmp_path`` and breaks one thing; the session
corpus and run are only read (the catalogue checks that a failing command leaves them untouched).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.testing.downstream import tiny_corpus, tiny_pretrained


@pytest.fixture(scope="session")
def clean_corpus(tmp_path_factory) -> Path:
    """Two speakers x three utterances of the synthetic corpus (wav.scp, utt2spk, text, utt2emo, utt2dur)."""
    return tiny_corpus(tmp_path_factory.mktemp("catalogue-corpus"), speakers=2, utts_per_speaker=3)


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory, clean_corpus) -> Path:
    """A one-step mspm pretraining run of a tiny AST on the corpus (a real checkpoint for --model / -u)."""
    return tiny_pretrained(tmp_path_factory.mktemp("catalogue-run") / "run", clean_corpus, steps=1)


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory, clean_corpus, clean_run) -> Path:
    """Mean-pooled embeddings of the corpus by the tiny run, as a Kaldi archive (what `sv score` reads)."""
    from audiossl.cli.main import main

    out = tmp_path_factory.mktemp("catalogue-embeddings") / "xvector.ark"
    assert main(["sv", "embed", str(clean_corpus), "-u", str(clean_run), "-o", str(out), "--device", "cpu"]) == 0
    return out


@pytest.fixture(scope="session")
def er_run(tmp_path_factory, clean_corpus, clean_run) -> Path:
    """A one-step emotion-recognition run on the corpus (for `er evaluate`)."""
    from audiossl.cli.main import main

    out = tmp_path_factory.mktemp("catalogue-er") / "run"
    argv = [
        "er",
        "train",
        str(clean_corpus),
        "-u",
        str(clean_run),
        "-o",
        str(out),
        "--max-steps",
        "1",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    return out
