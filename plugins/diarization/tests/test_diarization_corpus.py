"""The mixed multi-speaker corpus: references match the audio, turns alternate, the pyannote protocol loads."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile as sf
from audiossl_diarization.corpus import (
    SUBSETS,
    CorpusConfig,
    load_protocol,
    make_corpus,
    plan_recording,
    split_speakers,
)
from audiossl_diarization.evaluation import read_rttm, read_uem
from diarization_helpers import RECORDINGS

from audiossl.errors import ConfigError, DataError, UserError


def test_files_and_references(corpus_dir):
    info = json.loads((corpus_dir / "corpus.json").read_text())
    groups = info["speakers"]
    assert set(groups["train"]).isdisjoint(groups["test"]) and set(groups["train"]).isdisjoint(groups["development"])
    for subset, count in zip(SUBSETS, RECORDINGS, strict=True):
        uris = (corpus_dir / f"{subset}.lst").read_text().split()
        assert len(uris) == count
        references, uem = read_rttm(corpus_dir / f"{subset}.rttm"), read_uem(corpus_dir / f"{subset}.uem")
        assert sorted(references) == sorted(uris) == sorted(uem)
        for uri in uris:
            audio, rate = sf.read(corpus_dir / "wav" / f"{uri}.wav", dtype="float32")
            assert rate == info["sample_rate"]
            assert uem[uri].extent().end == pytest.approx(len(audio) / rate, abs=1e-3)
            reference = references[uri]
            labels = reference.labels()
            assert len(labels) == 2 and set(labels) <= set(groups[subset])
            turns = sorted(reference.itertracks(yield_label=True), key=lambda t: t[0].start)
            assert all(a[2] != b[2] for a, b in zip(turns, turns[1:], strict=False))  # consecutive turns alternate
            speech = np.zeros(len(audio), dtype=bool)
            for segment, _, _ in turns:
                speech[int(segment.start * rate) : int(np.ceil(segment.end * rate))] = True
                # every reference turn holds speech: its RMS is far above the -70 dBFS noise floor
                assert (
                    20 * np.log10(np.sqrt(np.mean(audio[int(segment.start * rate) : int(segment.end * rate)] ** 2)))
                    > -45
                )
            # outside all turns (away from the edges, where trimming leaves a little) only the noise floor is left
            margin = int(0.03 * rate)
            quiet = ~np.convolve(speech, np.ones(2 * margin + 1), mode="same").astype(bool)
            assert quiet.sum() > 0.1 * rate
            assert 20 * np.log10(np.sqrt(np.mean(audio[quiet] ** 2))) < -45


def test_protocol_gives_the_rttm(corpus_dir):
    protocol = load_protocol(corpus_dir)
    files = list(protocol.test())
    references = read_rttm(corpus_dir / "test.rttm")
    assert [f["uri"] for f in files] == (corpus_dir / "test.lst").read_text().split()
    for file in files:
        assert str(file["audio"]).endswith(f"wav/{file['uri']}.wav")
        assert list(file["annotation"].itertracks(yield_label=True)) == list(
            references[file["uri"]].itertracks(yield_label=True)
        )
        assert file["annotated"].extent().start == 0.0
    assert len(list(protocol.train())) == RECORDINGS[0]


def test_existing_output_and_bad_settings(source_dir, corpus_dir, tmp_path, caplog):
    before = (corpus_dir / "test.rttm").read_text()
    with pytest.raises(UserError, match="--overwrite"):
        make_corpus(source_dir, corpus_dir, CorpusConfig(recordings=(1, 0, 0)))
    assert (corpus_dir / "test.rttm").read_text() == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not a corpus"):
        make_corpus(source_dir, other, CorpusConfig(recordings=(1, 0, 0)), overwrite=True)
    assert (other / "keep.txt").exists()
    with pytest.raises(ConfigError):
        CorpusConfig(turns=(1, 3))  # fewer turns than speakers
    with pytest.raises(DataError, match="needs 3"):
        split_speakers(["a", "b"], CorpusConfig(speakers_per_recording=3, turns=(3, 4)))
    with caplog.at_level(logging.WARNING):
        assert split_speakers(["a", "b", "c"], CorpusConfig()) == {s: ["a", "b", "c"] for s in SUBSETS}
    assert any("share speakers" in r.getMessage() for r in caplog.records)


def test_same_seed_same_recordings(source_dir, corpus_dir, tmp_path):
    again = make_corpus(source_dir, tmp_path / "again", CorpusConfig(recordings=RECORDINGS, turns=(3, 5), seed=3))
    for name in ("train.rttm", "test.rttm", "wav/test_0000.wav"):
        assert (again / name).read_bytes() == (corpus_dir / name).read_bytes()


def test_one_speaker_recordings_never_overlap_themselves():
    durations = {"a": [("u1", 2.0, 0.2, 1.8), ("u2", 1.5, 0.1, 1.3)]}
    config = CorpusConfig(speakers_per_recording=1, turns=(3, 5), overlap=1.0)
    for seed in range(10):
        placed, turns, total = plan_recording(np.random.default_rng(seed), ["a"], durations, config)
        assert all(later.start >= earlier.end for earlier, later in zip(turns, turns[1:], strict=False))
        assert total >= max(offset for _, _, offset in placed) + 1.3 and turns[0].start >= config.lead_seconds[0]
