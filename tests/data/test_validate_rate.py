"""``audiossl data validate --sample-rate R``: combined 16 kHz and 22.05 kHz audio is fine when read at R.

The reference for what "will be resampled" means is the loader itself: ``AudioDataset`` at R returns
every utterance at R, with the length torchaudio's resampler gives (checked here). The notes are
compared with the rates soundfile reports for each file, counted in the test.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from audiossl.cli.main import main
from audiossl.data.validate import validate_data_dir

RATES = {"a": (16000, 3), "b": (22050, 2)}  # part -> (rate, utterances)


def part(root: Path, name: str, rate: int, count: int) -> Path:
    """A data dir of ``count`` tones at ``rate`` (wav.scp, utt2spk, utt2dur)."""
    data = root / name
    data.mkdir(parents=True)
    rows, spk, dur = [], [], []
    for i in range(count):
        utt = f"{name}{i}"
        seconds = 0.5 + 0.1 * i
        t = np.arange(round(seconds * rate)) / rate
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(exist_ok=True)
        soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
        rows.append(f"{utt} {path}")
        spk.append(f"{utt} spk{name}")
        dur.append(f"{utt} {len(t) / rate:.4f}")
    for table, lines in (("wav.scp", rows), ("utt2spk", spk), ("utt2dur", dur)):
        (data / table).write_text("\n".join(lines) + "\n")
    (data / "spk2utt").write_text(f"spk{name} {' '.join(f'{name}{i}' for i in range(count))}\n")
    return data


@pytest.fixture(scope="module")
def combined(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rates")
    parts = [str(part(root, name, rate, count)) for name, (rate, count) in RATES.items()]
    assert main(["data", "combine", str(root / "all"), *parts]) == 0
    return root / "all"


def native_rates(data: Path) -> Counter:
    """Rate -> recordings, read with soundfile (the independent count)."""
    lines = (data / "wav.scp").read_text().splitlines()
    return Counter(soundfile.info(line.split(maxsplit=1)[1]).samplerate for line in lines)


def test_mixed_rates_are_refused_without_a_target_rate_with_a_hint(combined, capsys):
    assert main(["data", "validate", str(combined)]) == 2
    err = capsys.readouterr().err
    assert err.count("mixed sample rates; most recordings have 16000 Hz") == native_rates(combined)[22050] == 2
    assert "check with --sample-rate R" in err


@pytest.mark.parametrize("target", [16000, 22050, 8000])
def test_a_target_rate_accepts_them_and_notes_what_is_resampled(combined, target, capsys):
    assert main(["data", "validate", str(combined), "--sample-rate", str(target)]) == 0
    captured = capsys.readouterr()
    assert f"{combined}: OK (at {target} Hz)" in captured.out
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    expected = {rate: count for rate, count in native_rates(combined).items() if rate != target}
    assert len(notes) == len(expected)
    wav_scp = (combined / "wav.scp").read_text().splitlines()
    for rate, count in expected.items():
        (note,) = [n for n in notes if f"{count} recording(s) at {rate} Hz" in n]
        line = next(i for i, row in enumerate(wav_scp, 1) if soundfile.info(row.split()[1]).samplerate == rate)
        assert note.startswith(f"note: {combined / 'wav.scp'}:{line}: ")
        assert ("UPSAMPLED" in note) == (rate < target) and ("downsampled" in note) == (rate > target)


def test_a_target_rate_still_reports_other_problems(combined, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for table in ("wav.scp", "utt2spk", "spk2utt", "utt2dur"):
        (broken / table).write_text((combined / table).read_text())
    lines = (broken / "utt2dur").read_text().splitlines()
    lines[0] = lines[0].split()[0] + " 9.0"
    (broken / "utt2dur").write_text("\n".join(lines) + "\n")
    notes: list = []
    problems = validate_data_dir(broken, resample_to=16000, notes=notes)
    assert [(Path(p.path).name, p.line) for p in problems] == [("utt2dur", 1)]
    assert "9.0 s disagrees with the audio" in problems[0].message
    assert len(notes) == 1  # the 22.05 kHz recordings
    # The strict check is still there for callers that need the native rate.
    assert len(validate_data_dir(combined, sample_rate=16000, resample_to=16000)) == 2


def test_the_loader_does_read_every_recording_at_the_target_rate(combined):
    from audiossl.data.dataset import AudioDataset

    dataset = AudioDataset(combined, sample_rate=16000)
    for index, utt in enumerate(dataset.ids):
        path = dict(line.split(maxsplit=1) for line in (combined / "wav.scp").read_text().splitlines())[utt]
        native, rate = soundfile.read(path, dtype="float32")
        expected = torchaudio.functional.resample(torch.from_numpy(native), rate, 16000)
        got = dataset[index].waveform
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
