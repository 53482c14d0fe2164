"""The wav.scp pipe policy in Python: refused by default, ``allow_pipes=True`` or AUDIOSSL_ALLOW_PIPES=1 runs them.

Every reader goes through :mod:`audiossl.data.wav_scp`; an explicit ``allow_pipes`` wins over the
process policy (the environment variable), which DataLoader workers inherit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from audiossl.data.config import DataConfig
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.kaldi import DataDir
from audiossl.data.validate import fix_data_dir, validate_data_dir
from audiossl.data.wav_scp import (
    PIPES_ENV,
    PipeRefused,
    allowing_pipes,
    check_pipes,
    load_utterance,
    pipes_allowed,
    read_wav_scp_entry,
    read_wav_scp_info,
)
from audiossl.errors import AudioError, ConfigError, set_interface
from audiossl.train.config import config_from_dict


@pytest.fixture(autouse=True)
def _no_pipe_policy(monkeypatch):
    monkeypatch.delenv(PIPES_ENV, raising=False)


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "a.wav"
    soundfile.write(path, np.linspace(-0.5, 0.5, 1600, dtype=np.float32), 16000, subtype="FLOAT")
    return path


@pytest.fixture
def piped_dir(tmp_path: Path, wav: Path) -> tuple[Path, Path]:
    """A data dir of three recordings; line 2 of wav.scp is a pipe that leaves a marker; (dir, marker)."""
    data = tmp_path / "data"
    data.mkdir()
    marker = tmp_path / "MARKER"
    for name in ("b.wav", "c.wav"):
        shutil.copy(wav, tmp_path / name)
    (data / "wav.scp").write_text(
        f"r1 {tmp_path / 'b.wav'}\nr2 touch {marker}; cat {wav} |\nr3 {tmp_path / 'c.wav'}\n", encoding="utf-8"
    )
    (data / "utt2spk").write_text("r1 s\nr2 s\nr3 s\n", encoding="utf-8")
    return data, marker


def _refused(call, marker: Path, path: Path | None = None, line: int | None = None) -> PipeRefused:
    with pytest.raises(PipeRefused) as caught:
        call()
    assert not marker.exists(), "the pipe ran"
    error = caught.value
    assert isinstance(error, AudioError)
    if path is not None:
        assert (error.path, error.line) == (str(path), line)
    return error


def test_default_refuses_in_every_reader(piped_dir, wav, tmp_path) -> None:
    data, marker = piped_dir
    command = f"touch {marker}; cat {wav} |"
    wav_scp = data / "wav.scp"
    error = _refused(lambda: read_wav_scp_entry(command), marker)
    assert "allow_pipes=True" in error.message and f"{PIPES_ENV}=1" in error.message  # Python spelling
    assert "--allow-pipes" not in error.message
    _refused(lambda: read_wav_scp_entry(command, source=(wav_scp, 2)), marker, wav_scp, 2)
    _refused(lambda: read_wav_scp_info(command, source=(wav_scp, 2)), marker, wav_scp, 2)
    loaded = DataDir.load(data)
    _refused(lambda: load_utterance(loaded, "r2"), marker, wav_scp, 2)
    _refused(lambda: check_pipes(loaded), marker, wav_scp, 2)
    _refused(lambda: AudioDataset(data), marker, wav_scp, 2)  # at construction, not in a worker
    _refused(lambda: validate_data_dir(data), marker, wav_scp, 2)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    _refused(lambda: fix_data_dir(data), marker, wav_scp, 2)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # nothing written before the refusal
    assert validate_data_dir(data, check_audio=False) == []  # tables alone run nothing, refuse nothing


def test_the_cli_message_names_the_global_flag(wav, tmp_path) -> None:
    set_interface("cli")
    try:
        error = _refused(lambda: read_wav_scp_entry(f"touch {tmp_path / 'm'}; cat {wav} |"), tmp_path / "m")
    finally:
        set_interface("python")
    assert "audiossl --allow-pipes <command>" in error.message and "allow_pipes=True" not in error.message


def test_allow_pipes_true_runs_them(piped_dir, wav) -> None:
    data, marker = piped_dir
    expected = torch.from_numpy(soundfile.read(wav, dtype="float32")[0])
    waveform, rate = load_utterance(DataDir.load(data), "r2", allow_pipes=True)
    assert marker.exists() and rate == 16000
    torch.testing.assert_close(waveform, expected)
    marker.unlink()
    dataset = AudioDataset(data, allow_pipes=True)
    torch.testing.assert_close(dataset[1].waveform, expected)
    assert marker.exists()
    assert validate_data_dir(data, allow_pipes=True) == []


def test_the_environment_variable_runs_them(piped_dir, wav, monkeypatch) -> None:
    data, marker = piped_dir
    monkeypatch.setenv(PIPES_ENV, "1")
    assert pipes_allowed()
    read_wav_scp_entry(f"touch {marker}; cat {wav} |")
    assert marker.exists()
    marker.unlink()
    dataset = AudioDataset(data)  # None: the process policy
    loader = DataLoader(dataset, batch_size=3, collate_fn=collate, num_workers=1)  # a worker process reads it
    batch = next(iter(loader))
    assert marker.exists() and batch.ids == ["r1", "r2", "r3"]
    torch.testing.assert_close(batch.waveforms[1], batch.waveforms[0])


def test_explicit_false_wins_over_the_environment(piped_dir, wav, monkeypatch) -> None:
    data, marker = piped_dir
    monkeypatch.setenv(PIPES_ENV, "1")
    error = _refused(lambda: AudioDataset(data, allow_pipes=False), marker, data / "wav.scp", 2)
    assert "allow_pipes=False" in error.message
    _refused(lambda: validate_data_dir(data, allow_pipes=False), marker, data / "wav.scp", 2)


def test_environment_values(monkeypatch) -> None:
    for value, allowed in [("1", True), ("true", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv(PIPES_ENV, value)
        assert pipes_allowed() is allowed
    monkeypatch.setenv(PIPES_ENV, "maybe")
    with pytest.raises(ConfigError, match=f"{PIPES_ENV}='maybe'"):
        pipes_allowed()
    assert pipes_allowed(True) is True  # an explicit choice does not consult it


def test_allowing_pipes_is_scoped(monkeypatch) -> None:
    with allowing_pipes():
        assert os.environ[PIPES_ENV] == "1" and pipes_allowed()
    assert PIPES_ENV not in os.environ
    monkeypatch.setenv(PIPES_ENV, "0")
    with allowing_pipes(False):  # False leaves the policy alone
        assert not pipes_allowed()
    with allowing_pipes(True):
        assert pipes_allowed()
    assert os.environ[PIPES_ENV] == "0"


def test_data_config_key(tmp_path) -> None:
    assert DataConfig().allow_pipes is False
    assert config_from_dict({"data": {"allow_pipes": True}}).data.allow_pipes is True
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  allow_pipes: true\n", encoding="utf-8")
    from audiossl.train.config import resolve_config

    assert resolve_config(config).data.allow_pipes is True  # the YAML key checks accept it
    assert resolve_config("mspm-ast-tiny", ["data.allow_pipes=true"]).data.allow_pipes is True
