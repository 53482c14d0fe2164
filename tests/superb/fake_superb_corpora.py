"""Tiny fake releases of SUPERB's public corpora in their real layouts (a few short tones each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(path: Path, seconds: float = 0.3, rate: int = 16000, freq: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


def speech_commands(root: Path) -> Path:
    """yes/no/bed clips of speakers a1b2c3d4 and 0f0e0d0c, list files, 3 s of background noise."""
    for word in ("yes", "no", "bed"):
        for speaker in ("a1b2c3d4", "0f0e0d0c"):
            for n in range(2):
                tone(root / word / f"{speaker}_nohash_{n}.wav")
    (root / "validation_list.txt").write_text("yes/a1b2c3d4_nohash_1.wav\nbed/0f0e0d0c_nohash_1.wav\n")
    (root / "testing_list.txt").write_text("no/a1b2c3d4_nohash_1.wav\nyes/0f0e0d0c_nohash_1.wav\n")
    tone(root / "_background_noise_" / "white_noise.wav", seconds=10.5)
    (root / "README.md").write_text("fake\n")
    return root


FSC_HEADER = ",path,speakerId,transcription,action,object,location\n"


def fluent_speech_commands(root: Path) -> Path:
    base = root / "fluent_speech_commands_dataset"
    rows = {
        "train": [
            ("2BqVo8kVB2Skwgyb", "turn on the lights", "activate", "lights", "none"),
            ("2BqVo8kVB2Skwgyb", "turn up the heat in the kitchen", "increase", "heat", "kitchen"),
        ],
        "valid": [("4BrX8aDqK2cLZRYl", "lights off", "deactivate", "lights", "none")],
        "test": [("4BrX8aDqK2cLZRYl", "Switch on the lights!", "activate", "lights", "none")],
    }
    for split, items in rows.items():
        lines = [FSC_HEADER]
        for k, (speaker, text, action, obj, location) in enumerate(items):
            relative = f"wavs/speakers/{speaker}/{split}{k:03d}-aaaa.wav"
            tone(base / relative)
            lines.append(f"{k},{relative},{speaker},{text},{action},{obj},{location}\n")
        (base / "data").mkdir(parents=True, exist_ok=True)
        (base / "data" / f"{split}_data.csv").write_text("".join(lines))
    return root


def voxceleb1(root: Path) -> tuple[Path, Path]:
    lines = []
    for code, speaker in (("1", "id10001"), ("2", "id10001"), ("3", "id10001"), ("1", "id10002"), ("3", "id10002")):
        n = sum(1 for line in lines if speaker in line) + 1
        relative = f"{speaker}/1zcIwhmdeo4/{n:05d}.wav"
        tone(root / "wav" / relative)
        lines.append(f"{code} {relative}\n")
    split = root / "iden_split.txt"
    split.write_text("".join(lines))
    return root, split


def quesst14(root: Path) -> Path:
    base = root / "quesst14Database"
    docs = [f"quesst14_{i:05d}" for i in range(1, 5)]
    for doc in docs:
        tone(base / "Audio" / f"{doc}.wav", seconds=1.0)
    scoring = base / "scoring"
    scoring.mkdir(parents=True)
    (scoring / "language_key_utterances.lst").write_text(
        "".join(f"quesst14Database/Audio/{d}.wav {'nnenglish' if d != docs[-1] else 'albanian'}\n" for d in docs)
    )
    for name in ("dev", "eval"):
        ids = [f"quesst14_{name}_{k:04d}" for k in (1, 2)]
        for query in ids:
            tone(base / f"{name}_queries" / f"{query}.wav", seconds=0.4)
        (scoring / f"language_key_{name}.lst").write_text(
            "".join(f"quesst14Database/{name}_queries/{q}.wav nnenglish\n" for q in ids)
        )
        truth = scoring / f"groundtruth_quesst14_{name}"
        truth.mkdir()
        (truth / f"quesst14_{name}.rttm").write_text(
            f"LEXEME {docs[0]} 1 0.10 0.40 {ids[0]} lex {ids[0]} <NA>\n"
            f"LEXEME {docs[1]} 1 0.20 0.40 {ids[1]} lex {ids[1]} <NA>\n"
            f"LEXEME {docs[2]} 1 0.20 0.40 {ids[0]} lex {ids[0]} <NA>\n"
        )
    return base


def voicebank_demand(root: Path) -> Path:
    for folder in ("trainset_28spk", "testset"):
        speakers = ("p226", "p287") if folder == "trainset_28spk" else ("p232",)
        for speaker in speakers:
            for n in (1, 2):
                tone(root / f"clean_{folder}_wav" / f"{speaker}_{n:03d}.wav", rate=48000)
                tone(root / f"noisy_{folder}_wav" / f"{speaker}_{n:03d}.wav", rate=48000, freq=300.0)
    return root


def libri2mix(root: Path) -> Path:
    for part in ("train-100", "dev", "test"):
        folder = root / "Libri2Mix" / "wav16k" / "min" / part
        for mix in ("103-1240-0000_1034-121119-0001", "19-198-0002_2001-1240-0003"):
            for sub in ("mix_clean", "s1", "s2"):
                tone(folder / sub / f"{mix}.wav")
    return root


def librispeech(root: Path) -> Path:
    """LibriSpeech/<part>/<spk>/<chapter>/ with flac files and the chapter's trans.txt."""
    for part, speaker in (("train-clean-100", "103"), ("dev-clean", "19"), ("test-clean", "2001")):
        folder = root / "LibriSpeech" / part / speaker / "1240"
        lines = []
        for n, words in enumerate(("HELLO WORLD", "HELLO ZEBRA")):
            utt = f"{speaker}-1240-{n:04d}"
            path = folder / f"{utt}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(4800) / 16000
            sf.write(str(path), (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, format="FLAC")
            lines.append(f"{utt} {words}\n")
        (folder / f"{speaker}-1240.trans.txt").write_text("".join(lines))
    return root
