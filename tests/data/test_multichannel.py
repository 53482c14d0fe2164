"""Multi-channel recordings in a data dir: validate reports odd channel counts; data.channel picks one (issue 13)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from _datadir_factory import make_data_dir, table_lines, write_lines

from audiossl.cli.main import main
from audiossl.data.backends.default import TrainData
from audiossl.data.config import DataConfig
from audiossl.data.dataset import AudioDataset
from audiossl.data.validate import validate_data_dir
from audiossl.errors import AudioError, ConfigError

RATE = 16000


def _with_one_eight_channel_recording(tmp_path: Path, num_utts: int = 6) -> tuple[Path, str, int, Path]:
    """A clean dir whose 4th recording is replaced by an 8-channel file: (dir, its id, its wav.scp line, file)."""
    data = make_data_dir(tmp_path, num_utts=num_utts)
    lines = table_lines(data / "wav.scp")
    number = 4
    utt, path = lines[number - 1].split()
    frames = soundfile.info(path).frames
    samples = np.random.default_rng(3).uniform(-0.5, 0.5, size=(frames, 8)).astype(np.float32)
    samples += np.arange(8, dtype=np.float32) / 10
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    return data, utt, number, Path(path)


def test_validate_reports_a_recording_whose_channel_count_differs(tmp_path: Path) -> None:
    data, _, number, path = _with_one_eight_channel_recording(tmp_path)
    problems = [str(p) for p in validate_data_dir(data)]
    expected = f"{data / 'wav.scp'}:{number}: {path}: 8 channels where the other 5 recordings have 1"
    assert [p for p in problems if "channel" in p] == [p for p in problems if p.startswith(expected)], problems
    assert len([p for p in problems if p.startswith(expected)]) == 1
    assert "channel=N" in next(p for p in problems if p.startswith(expected))  # says how to choose one


def test_validate_cli_fails_and_names_the_line(tmp_path: Path, capsys) -> None:
    data, _, number, _ = _with_one_eight_channel_recording(tmp_path)
    assert main(["data", "validate", str(data)]) == 2
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert f"{data / 'wav.scp'}:{number}: " in output and "8 channels where the other 5 recordings have 1" in output
    assert "--channel N" in output  # the CLI spelling under the CLI


def test_uniform_channel_counts_are_not_a_problem(tmp_path: Path) -> None:
    data = make_data_dir(tmp_path, num_utts=3)
    for line in table_lines(data / "wav.scp"):
        path = line.split()[1]
        mono, _ = soundfile.read(path, dtype="float32")
        soundfile.write(path, np.stack([mono, -mono], axis=1), RATE, subtype="FLOAT")
    assert [p for p in validate_data_dir(data) if "channel" in str(p)] == []


def test_dataset_channel_reads_that_channel(tmp_path: Path) -> None:
    data, utt, _, path = _with_one_eight_channel_recording(tmp_path)
    reference = soundfile.read(path, dtype="float32")[0]  # (T, 8)
    index = AudioDataset(data).ids.index(utt)
    for channel in (0, 6):
        item = AudioDataset(data, channel=channel)[index]
        np.testing.assert_array_equal(item.waveform.numpy(), reference[:, channel])
    mixed = AudioDataset(data)[index]
    np.testing.assert_allclose(mixed.waveform.numpy(), reference.mean(axis=1), atol=1e-6)
    # channel 6 of a mono recording does not exist: the error names wav.scp:LINE, the file and the option
    other = next(i for i, u in enumerate(AudioDataset(data).ids) if u != utt)
    with pytest.raises(AudioError, match=r"wav\.scp:\d+: .*channel 6 does not exist.*channel=6"):
        AudioDataset(data, channel=6)[other]


def test_data_config_channel_reaches_training_batches(tmp_path: Path) -> None:
    data, utt, _, path = _with_one_eight_channel_recording(tmp_path)
    write_lines(data / "wav.scp", [line for line in table_lines(data / "wav.scp") if line.startswith(utt + " ")])
    reference = soundfile.read(path, dtype="float32")[0][:, 5]
    config = DataConfig(channel=5, num_workers=0, max_utt_seconds=None, normalize="none")
    train = TrainData([data], config, shuffle=False)
    batch, _, _ = next(iter(train))
    assert batch.ids == [utt]
    np.testing.assert_array_equal(batch.waveforms[0, : int(batch.lengths[0])].numpy(), reference)


@pytest.mark.parametrize("value", [-1, True])
def test_data_config_channel_must_be_an_index(value) -> None:
    with pytest.raises(ConfigError, match="data.channel must be null"):
        DataConfig(channel=value)
