"""Small Kaldi data dirs written into a test's tmp_path (deterministic noise, distinct lengths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16000
SPEAKERS = ("spkA", "spkB", "spkC")
EMOTIONS = ("happy", "sad")


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, sample_rate, subtype=subtype)
    return path


def noise(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(round(seconds * sample_rate)) * 0.1).astype(np.float32)


def write_lines(path: Path, lines: list[str] | dict[str, str]) -> None:
    if isinstance(lines, dict):
        lines = [f"{key} {value}" for key, value in lines.items()]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def make_data_dir(root: Path, num_utts: int = 6, sample_rate: int = SAMPLE_RATE) -> Path:
    """A clean data dir: wav.scp, utt2spk, spk2utt, text, utt2dur, utt2emo; utterance i lasts 0.2 + 0.05 i s."""
    data = root / "data"
    data.mkdir(parents=True)
    wav_scp, utt2spk, text, utt2dur, utt2emo = {}, {}, {}, {}, {}
    for i in range(num_utts):
        speaker = SPEAKERS[i % len(SPEAKERS)]
        utt = f"{speaker}-utt{i:02d}"
        seconds = 0.2 + 0.05 * i
        wav = write_wav(root / "wav" / f"{utt}.wav", noise(seconds, i, sample_rate), sample_rate)
        wav_scp[utt] = str(wav)
        utt2spk[utt] = speaker
        text[utt] = f"word{i} other words"
        utt2dur[utt] = f"{round(seconds * sample_rate) / sample_rate:.4f}"
        utt2emo[utt] = EMOTIONS[i % 2]
    keys = sorted(wav_scp, key=lambda k: k.encode())
    for name, table in [("wav.scp", wav_scp), ("utt2spk", utt2spk), ("text", text), ("utt2dur", utt2dur)]:
        write_lines(data / name, {k: table[k] for k in keys})
    write_lines(data / "utt2emo", {k: utt2emo[k] for k in keys})
    spk2utt = {}
    for k in keys:
        spk2utt.setdefault(utt2spk[k], []).append(k)
    write_lines(data / "spk2utt", {s: " ".join(u) for s, u in sorted(spk2utt.items())})
    return data


def table_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()
