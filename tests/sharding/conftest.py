"""A small synthetic corpus shared by the sharding tests (every stage is compared on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.data.synth import SynthConfig, synthesize_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """11 utterances of 2 speakers: odd, so that shards and chunks do not divide it evenly."""
    out = tmp_path_factory.mktemp("sharding") / "synth"
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=6))
    return _drop_last_utterance(out)


def _drop_last_utterance(path: Path) -> Path:
    """Remove the last utterance from every table, leaving a consistent data dir of 11."""
    ids = [line.split()[0] for line in (path / "wav.scp").read_text().splitlines() if line.strip()]
    last = ids[-1]
    for table in path.iterdir():
        if not table.is_file() or table.suffix in (".wav", ".flac"):
            continue
        try:
            lines = table.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        kept = [line for line in lines if line.split(" ", 1)[0] != last]
        kept = [line.replace(f" {last}", "") if table.name == "spk2utt" else line for line in kept]
        table.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return path
