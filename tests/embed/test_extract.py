"""Extraction to disk: every format round-trips, an interrupted run resumes without recomputing, outputs are guarded."""

from __future__ import annotations

import json
import logging
import warnings

import h5py
import kaldiio
import numpy as np
import pytest
from safetensors.numpy import load_file

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir
from audiossl.data.wav_scp import load_utterance
from audiossl.embed import Embedder, extract, load, read_features
from audiossl.embed import embedder as embedder_module
from audiossl.embed.extract import DONE_NAME, OutputExistsError
from audiossl.errors import AudioError, ConfigError

_REFERENCES: dict[tuple, dict[str, np.ndarray]] = {}


def reference(checkpoint, data_dir, layers=None, pooling=None) -> dict[str, np.ndarray]:
    """Every utterance embedded alone, in memory (computed once per setting)."""
    key = (str(checkpoint), str(data_dir), str(layers), pooling)
    if key not in _REFERENCES:
        _REFERENCES[key] = _reference(checkpoint, data_dir, layers, pooling)
    return _REFERENCES[key]


def _reference(checkpoint, data_dir, layers, pooling) -> dict[str, np.ndarray]:
    data = DataDir.load(data_dir)
    embedder = Embedder(load(checkpoint, device="cpu"), device="cpu")
    out = {}
    for utt in data.utterance_ids:
        waveform, rate = load_utterance(data, utt)
        out[utt] = embedder.embed(waveform, sample_rate=rate, layers=layers, pooling=pooling)[0].numpy()
    return out


def read_natively(out, fmt: str) -> dict[str, np.ndarray]:
    """The output read with the format's own library, not with read_features."""
    if fmt == "npy":
        lines = (out / "index.scp").read_text().splitlines()
        return {utt: np.load(out / rel) for utt, rel in (line.split() for line in lines)}
    if fmt == "ark":
        return {utt: np.asarray(array) for utt, array in kaldiio.load_scp(str(out / "feats.scp")).items()}
    if fmt == "safetensors":
        files = json.loads((out / "index.json").read_text())["files"]
        return {utt: load_file(str(out / rel))[utt] for utt, rel in files.items()}
    with h5py.File(out / "feats.h5", "r") as handle:
        return {utt: handle[utt][()] for utt in handle}


@pytest.mark.parametrize("fmt", ["npy", "ark", "safetensors", "hdf5"])
@pytest.mark.parametrize(("layer", "pooling"), [(None, None), (0, "stats")])
def test_every_format_round_trips(fmt, layer, pooling, ast_checkpoint, data_dir, tmp_path):
    out = tmp_path / "feats"
    result = extract(ast_checkpoint, data_dir, out, layer=layer, pooling=pooling, format=fmt, chunk_size=3)
    assert (result.total, result.skipped, result.computed) == (7, 0, 7)
    expected = reference(ast_checkpoint, data_dir, layers=layer, pooling=pooling)
    for got in (read_natively(out, fmt), read_features(out)):
        assert sorted(got) == sorted(expected)
        for utt, array in expected.items():
            assert got[utt].shape == array.shape and got[utt].dtype == np.float32
            np.testing.assert_allclose(got[utt], array, atol=1e-5)


def test_all_layers_of_frames_in_hdf5_and_refused_in_ark(ast_checkpoint, data_dir, tmp_path):
    extract(ast_checkpoint, data_dir, tmp_path / "h5", layer="all", format="hdf5")
    got = read_features(tmp_path / "h5")
    expected = reference(ast_checkpoint, data_dir, layers="all")
    assert all(got[utt].shape == expected[utt].shape and got[utt].shape[0] == 2 for utt in expected)
    with pytest.raises(ConfigError, match="Kaldi ark holds matrices"):
        extract(ast_checkpoint, data_dir, tmp_path / "ark", layer="all", format="ark")


class Crash(Exception):
    pass


@pytest.mark.parametrize("fmt", ["ark", "npy"])
def test_interrupted_extraction_resumes_without_recomputing(fmt, ast_checkpoint, data_dir, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    extract(ast_checkpoint, data_dir, clean, pooling="mean", format=fmt, chunk_size=2)

    embedded: list[int] = []
    original = embedder_module.Embedder.embed

    def counting(self, inputs, *args, crash_after=None, **kwargs):
        if crash_after is not None and sum(embedded) >= crash_after:
            raise Crash("killed")
        result = original(self, inputs, *args, **kwargs)
        embedded.append(len(result))
        return result

    out = tmp_path / "resumed"
    monkeypatch.setattr(embedder_module.Embedder, "embed", lambda *a, **k: counting(*a, crash_after=4, **k))
    with pytest.raises(Crash):
        extract(ast_checkpoint, data_dir, out, pooling="mean", format=fmt, chunk_size=2)
    assert sum(embedded) == 4
    done_lines = (out / DONE_NAME).read_text().splitlines()
    assert len(done_lines) == 2  # two chunks of two finished before the crash
    finished = [path for path in (out / fmt).iterdir()]
    stamps = {path: (path.stat().st_mtime_ns, path.stat().st_ino) for path in finished}
    # A crash while appending the next done line leaves half a line: it must not count.
    with open(out / DONE_NAME, "a") as handle:
        handle.write("part-00002 spk0-utt0")
    (out / fmt / "orphan.tmp").write_text("left by a killed write")

    embedded.clear()
    monkeypatch.setattr(embedder_module.Embedder, "embed", lambda *a, **k: counting(*a, **k))
    result = extract(ast_checkpoint, data_dir, out, pooling="mean", format=fmt, chunk_size=2)
    assert (result.skipped, result.computed) == (4, 3) and sum(embedded) == 3  # only the rest was computed
    for path, stamp in stamps.items():
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp  # finished entries untouched
    assert not (out / fmt / "orphan.tmp").exists()
    assert all(line.count(" ") >= 1 for line in (out / DONE_NAME).read_text().splitlines())
    got, want = read_natively(out, fmt), read_natively(clean, fmt)
    assert sorted(got) == sorted(want)
    for utt in want:
        np.testing.assert_allclose(got[utt], want[utt], atol=1e-6)


def test_existing_outputs_are_refused_unless_overwrite(ast_checkpoint, data_dir, tmp_path):
    out = tmp_path / "feats"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="output path exists"):
        extract(ast_checkpoint, data_dir, out, pooling="mean")
    with pytest.raises(OutputExistsError, match="neither"):  # --overwrite never deletes a foreign dir
        extract(ast_checkpoint, data_dir, out, pooling="mean", overwrite=True)
    assert (out / "mine.txt").read_text() == "precious"

    done = tmp_path / "done"
    extract(ast_checkpoint, data_dir, done, pooling="mean")
    with pytest.raises(OutputExistsError, match=r"finished extraction with other settings \(pooling\)"):
        extract(ast_checkpoint, data_dir, done, pooling="stats")
    result = extract(ast_checkpoint, data_dir, done, pooling="stats", overwrite=True)
    assert result.computed == 7 and read_features(done)["spk0-utt00"].shape == (64,)

    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data_dir), "-o", str(done), "--pool", "stats"]
    assert main([*args, "--format", "safetensors"]) == 2  # other settings than the finished extraction
    assert main([*args, "--overwrite", "--format", "safetensors"]) == 0
    assert (done / "index.json").is_file() and json.loads((done / "extract.json").read_text())["complete"]


def test_unfinished_output_with_other_settings_is_refused(ast_checkpoint, data_dir, tmp_path, monkeypatch):
    out = tmp_path / "feats"
    monkeypatch.setattr(embedder_module.Embedder, "embed", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        extract(ast_checkpoint, data_dir, out, pooling="mean")
    monkeypatch.undo()
    with pytest.raises(OutputExistsError, match=r"other settings \(pooling\)"):
        extract(ast_checkpoint, data_dir, out, pooling="stats")


def test_rate_mismatch_resamples_with_one_warning_or_fails(ast_checkpoint, tmp_path, capsys, caplog):
    from embed_helpers import write_data_dir

    slow = write_data_dir(tmp_path / "slow", [0.4, 0.5, 0.3], sample_rate=8000)
    first = DataDir.load(slow).utterance_ids[0]
    wav_scp = slow / "wav.scp"
    line = next(i for i, text in enumerate(wav_scp.read_text().splitlines(), 1) if text.split()[0] == first)
    audio = DataDir.load(slow).wav_scp[first]
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(slow), "--pool", "mean"]
    assert main([*args, "-o", str(tmp_path / "a"), "--rate-mismatch", "error"]) == 2
    err = capsys.readouterr().err
    # The CLI names its own flag, and the message names the file (wav.scp:LINE and the audio), not just the id.
    assert "8000 Hz" in err and "--rate-mismatch resample" in err and "on_rate_mismatch" not in err
    assert f"{wav_scp}:{line}: {audio}" in err and "Traceback" not in err
    with pytest.raises(AudioError) as error:  # in Python: the keyword argument
        extract(ast_checkpoint, slow, tmp_path / "p", pooling="mean", on_rate_mismatch="error")
    assert "on_rate_mismatch='resample'" in str(error.value) and f"{wav_scp}:{line}: {audio}" in str(error.value)
    assert "--rate-mismatch" not in str(error.value)
    caplog.clear()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")  # logged, not a warnings.warn that prints a line of source code
        extract(ast_checkpoint, slow, tmp_path / "b", pooling="mean", layer=1, chunk_size=1)
    resampling = [record for record in caplog.records if "resampling" in record.getMessage()]
    assert len(resampling) == 1  # not one per chunk
    assert f"{wav_scp}:{line}: {audio}" in resampling[0].getMessage()
    assert "on_rate_mismatch='error'" in resampling[0].getMessage()
    expected = reference(ast_checkpoint, slow, layers=1, pooling="mean")
    got = read_features(tmp_path / "b")
    for utt, array in expected.items():
        np.testing.assert_allclose(got[utt], array, atol=1e-5)


def test_rerunning_a_finished_extraction_is_already_complete(ast_checkpoint, data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "feats"
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data_dir), "-o", str(out), "--pool", "mean"]
    assert main(args) == 0
    capsys.readouterr()
    files = {path: (path.stat().st_mtime_ns, path.stat().st_ino) for path in out.rglob("*") if path.is_file()}
    # Like a finished recipe stage: the same command again exits 0, says so and computes nothing.
    monkeypatch.setattr(embedder_module.Embedder, "embed", lambda *a, **k: (_ for _ in ()).throw(Crash()))
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "already complete (7 utterances, same settings)" in captured.out and "Traceback" not in captured.err
    assert {path: (path.stat().st_mtime_ns, path.stat().st_ino) for path in out.rglob("*") if path.is_file()} == files
    result = extract(ast_checkpoint, data_dir, out, pooling="mean")
    assert result.already_complete and (result.computed, result.skipped) == (0, 7)
    assert result.index == out / "index.scp" and result.index.is_file()
    # Other settings are still refused, naming what differs.
    assert main([*args[:-1], "stats"]) == 2
    assert "finished extraction with other settings (pooling)" in capsys.readouterr().err


def test_finished_extraction_of_other_utterances_is_refused(ast_checkpoint, tmp_path, capsys):
    from embed_helpers import write_data_dir

    data = write_data_dir(tmp_path / "corpus", [0.4, 0.5, 0.3])
    out = tmp_path / "feats"
    extract(ast_checkpoint, data, out, pooling="mean")
    assert write_data_dir(tmp_path / "corpus", [0.4, 0.5, 0.3, 0.6]) == data  # the same dir gained an utterance
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data), "-o", str(out), "--pool", "mean"]
    assert main(args) == 2
    assert f"finished extraction of other utterances (1 in {data} not in it, 0 in it" in capsys.readouterr().err
