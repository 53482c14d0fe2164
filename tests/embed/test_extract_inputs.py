"""``audiossl extract`` on awkward inputs: a channel of multi-channel audio, bad segments lines (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from embed_helpers import SAMPLE_RATE

from audiossl.cli.main import main
from audiossl.embed import Embedder, extract, load, read_features
from audiossl.embed.extract import OutputExistsError


def _multichannel_dir(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Two 4-channel recordings (0.6 s, 0.9 s): (data dir, utt -> samples (T, 4))."""
    data = root / "data"
    data.mkdir(parents=True)
    audio, lines = {}, []
    for seed, (utt, seconds) in enumerate([("a", 0.6), ("b", 0.9)]):
        samples = np.random.default_rng(seed).uniform(-0.4, 0.4, size=(round(seconds * SAMPLE_RATE), 4))
        samples = samples.astype(np.float32) * np.array([1.0, 0.1, 0.5, 0.02], dtype=np.float32)
        path = root / f"{utt}.wav"
        soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
        audio[utt] = samples
        lines.append(f"{utt} {path}\n")
    (data / "wav.scp").write_text("".join(lines))
    return data, audio


def test_extract_channel_embeds_that_channel(ast_checkpoint, tmp_path, capsys) -> None:
    data, audio = _multichannel_dir(tmp_path)
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data), "--pool", "mean"]
    assert main([*args, "-o", str(tmp_path / "ch2"), "--channel", "2"]) == 0
    assert main([*args, "-o", str(tmp_path / "mix")]) == 0
    capsys.readouterr()
    embedder = Embedder(load(ast_checkpoint, device="cpu"), device="cpu")
    chosen, mixed = read_features(tmp_path / "ch2"), read_features(tmp_path / "mix")
    for utt, samples in audio.items():
        expected = embedder.embed(torch.from_numpy(samples[:, 2].copy()), sample_rate=SAMPLE_RATE, pooling="mean")
        np.testing.assert_allclose(chosen[utt], expected[0].numpy(), atol=1e-5)
        expected_mix = embedder.embed(torch.from_numpy(samples.mean(axis=1)), sample_rate=SAMPLE_RATE, pooling="mean")
        np.testing.assert_allclose(mixed[utt], expected_mix[0].numpy(), atol=1e-5)
        assert not np.allclose(chosen[utt], mixed[utt], atol=1e-4)  # the channel made a difference
    settings = json.loads((tmp_path / "ch2" / "extract.json").read_text())
    assert settings["channel"] == 2 and "channel" not in json.loads((tmp_path / "mix" / "extract.json").read_text())


def test_extract_channel_out_of_range_names_the_file_and_the_flag(ast_checkpoint, tmp_path, capsys) -> None:
    data, _ = _multichannel_dir(tmp_path)
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data), "-o", str(tmp_path / "x"), "--channel", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {data / 'wav.scp'}:1: {tmp_path / 'a.wav'}: channel 4 does not exist" in err
    assert "numbered 0 to 3" in err and "--channel 4" in err and "channel=4" not in err and "Traceback" not in err
    assert main([*args[:-1], "-1"]) == 2  # typer refuses a negative index before anything runs
    assert "Invalid value for '--channel'" in capsys.readouterr().err


def _segmented(root: Path, segment_lines: list[str]) -> Path:
    data = root / "seg"
    data.mkdir(parents=True)
    path = root / "rec.wav"
    soundfile.write(path, np.zeros(SAMPLE_RATE, dtype=np.float32) + 0.01, SAMPLE_RATE)  # 1 s
    (data / "wav.scp").write_text(f"rec {path}\n")
    (data / "segments").write_text("".join(line + "\n" for line in segment_lines))
    return data


def test_extract_names_the_segments_line_and_id(ast_checkpoint, tmp_path, capsys) -> None:
    past_end = _segmented(tmp_path / "p", ["s1 rec 0.0 0.5", "s2 rec 0.3 2.5"])
    args = ["extract", "--model", str(ast_checkpoint), "--pool", "mean"]
    assert main([*args, "--data", str(past_end), "-o", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {past_end / 'segments'}:2: segment 's2' "), err
    assert "past the end of the recording (1.000 s)" in err and "Traceback" not in err
    backwards = _segmented(tmp_path / "b", ["s1 rec 0.6 0.2"])
    assert main([*args, "--data", str(backwards), "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {backwards / 'segments'}:1: segment 's1': bad span: start 0.6 s, end 0.2 s"), err
    assert not (tmp_path / "o2").exists()  # refused when the data dir is read, before any output


def test_extract_messages_speak_the_users_interface(ast_checkpoint, data_dir, tmp_path, capsys) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError) as error:
        extract(ast_checkpoint, data_dir, taken, pooling="mean")
    assert "overwrite=True" in str(error.value) and "--overwrite" not in str(error.value)
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data_dir), "--pool", "mean"]
    assert main([*args, "-o", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err
    assert main([*args, "-o", str(tmp_path / "b"), "--batch-seconds", "0"]) == 2
    err = capsys.readouterr().err
    assert "--batch-seconds must be positive" in err and "max_batch_seconds" not in err
    assert main([*args, "-o", str(tmp_path / "c"), "--layer", "top"]) == 2
    assert "--layer must be an integer" in capsys.readouterr().err


def test_a_changed_channel_is_a_changed_setting(ast_checkpoint, tmp_path, capsys) -> None:
    data, _ = _multichannel_dir(tmp_path)
    args = ["extract", "--model", str(ast_checkpoint), "--data", str(data), "--pool", "mean", "-o", str(tmp_path / "o")]
    assert main([*args, "--channel", "1"]) == 0
    assert main(args) == 2  # the mixdown is another setting than channel 1
    assert "other settings (channel)" in capsys.readouterr().err
