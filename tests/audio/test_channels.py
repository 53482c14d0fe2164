"""Multi-channel audio: the mixdown is logged once per process, and one channel can be chosen (issue 13)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.audio import io as audio_io
from audiossl.audio.io import load_audio
from audiossl.data.wav_scp import read_wav_scp_entry
from audiossl.errors import AudioError, set_interface

RATE = 16000


def _eight_channels(path: Path, frames: int = 4000, seed: int = 0) -> Path:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(frames, 8)).astype(np.float32)
    samples += np.arange(8, dtype=np.float32) / 10  # every channel different
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    return path


@pytest.fixture
def fresh_log(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """A process that has not mixed a file down yet, its log captured."""
    monkeypatch.setattr(audio_io, "_mixdown_logged", False)
    caplog.set_level(logging.INFO, logger="audiossl.audio.io")
    return caplog


def _mixdown_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "mixed down" in r.getMessage()]


def test_mixdown_is_the_mean_and_logged_once_naming_the_first_file(tmp_path: Path, fresh_log) -> None:
    first = _eight_channels(tmp_path / "first.wav")
    second = _eight_channels(tmp_path / "second.wav", seed=1)
    reference = soundfile.read(first, dtype="float32")[0]  # (T, 8)
    mono, rate = load_audio(first)
    assert rate == RATE and mono.shape == (4000,)
    np.testing.assert_allclose(mono.numpy(), reference.mean(axis=1), atol=1e-6)
    for _ in range(3):
        load_audio(second)
        load_audio(first, start=0.01, end=0.1)
    records = _mixdown_records(fresh_log)
    assert len(records) == 1, records  # once per process, not per utterance
    assert records[0].startswith(f"{first}: 8 channels mixed down to mono")
    assert "channel=N" in records[0]  # how to choose one, in the Python spelling here


def test_mixdown_log_names_the_cli_options_under_the_cli(tmp_path: Path, fresh_log) -> None:
    path = _eight_channels(tmp_path / "a.wav")
    set_interface("cli")
    try:
        load_audio(path)
    finally:
        set_interface("python")
    (record,) = _mixdown_records(fresh_log)
    assert "--channel N" in record and "data.channel: N" in record and "channel=N" not in record


def test_mono_files_and_a_chosen_channel_log_nothing(tmp_path: Path, fresh_log) -> None:
    mono = tmp_path / "mono.wav"
    soundfile.write(mono, np.zeros(1000, dtype=np.float32), RATE)
    load_audio(mono)
    load_audio(_eight_channels(tmp_path / "a.wav"), channel=2)
    load_audio(tmp_path / "a.wav", mono=False)  # every channel kept: nothing mixed
    assert _mixdown_records(fresh_log) == []


@pytest.mark.parametrize("channel", [0, 3, 7])
def test_chosen_channel_equals_soundfiles_column(tmp_path: Path, channel: int) -> None:
    path = _eight_channels(tmp_path / "a.wav")
    reference = soundfile.read(path, dtype="float32")[0][:, channel]
    waveform, _ = load_audio(path, channel=channel)
    np.testing.assert_array_equal(waveform.numpy(), reference)
    kept, _ = load_audio(path, channel=channel, mono=False)
    assert kept.shape == (1, 4000)
    np.testing.assert_array_equal(kept[0].numpy(), reference)
    span, _ = load_audio(path, channel=channel, start=0.05, end=0.1)
    np.testing.assert_array_equal(span.numpy(), reference[800:1600])
    resampled, rate = load_audio(path, 8000, channel=channel)
    assert rate == 8000 and resampled.shape == (2000,)


def test_channel_of_a_stream_and_of_a_wav_scp_entry(tmp_path: Path) -> None:
    path = _eight_channels(tmp_path / "a.wav")
    reference = soundfile.read(path, dtype="float32")[0][:, 5]
    from_bytes, _ = load_audio(path.read_bytes(), channel=5, name="command 'cat a.wav'")
    np.testing.assert_array_equal(from_bytes.numpy(), reference)
    from_entry, _ = read_wav_scp_entry(str(path), channel=5)
    np.testing.assert_array_equal(from_entry.numpy(), reference)


def test_out_of_range_channel_names_the_file_and_the_option(tmp_path: Path) -> None:
    path = _eight_channels(tmp_path / "a.wav")
    with pytest.raises(AudioError) as error:
        load_audio(path, channel=8)
    message = str(error.value)
    assert message.startswith(f"{path}: channel 8 does not exist: the audio has 8 channel(s), numbered 0 to 7")
    assert "channel=8" in message
    set_interface("cli")
    try:
        with pytest.raises(AudioError, match=r"--channel 8.*data\.channel: 8"):
            load_audio(path, channel=8)
    finally:
        set_interface("python")
    with pytest.raises(AudioError) as error:
        read_wav_scp_entry(str(path), channel=9, source=("data/wav.scp", 4))
    assert str(error.value).startswith(f"data/wav.scp:4: {path}: channel 9 does not exist")
    mono = tmp_path / "mono.wav"
    soundfile.write(mono, np.zeros(100, dtype=np.float32), RATE)
    assert load_audio(mono, channel=0)[0].shape == (100,)
    with pytest.raises(AudioError, match="has 1 channel"):
        load_audio(mono, channel=1)
