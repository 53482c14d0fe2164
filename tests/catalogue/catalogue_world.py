"""The bad-input catalogue's workbench: a per-case copy of the clean corpus and makers of bad files.

A :class:`World` lives in one test's ``tmp_path``. ``w.data`` is a fresh copy of the clean corpus
(wav.scp rewritten to point at the copy's audio), ``w.run`` the session's tiny pretrained run
(read only), ``w.out`` an output location that must not exist after a failing command, and
``w.bad`` a folder for the broken inputs. The makers below each write one kind of bad input.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch

RATE = 16000


@dataclass
class World:
    tmp: Path
    corpus: Path
    run: Path
    marker: Path = field(init=False)

    def __post_init__(self) -> None:
        self.marker = self.tmp / "PWNED"  # a malicious pickle would create this file
        self._data: Path | None = None
        self.lazy: set[str] = set()  # the session fixtures (beyond corpus and run) this case uses

    # ------------------------------------------------------------------ locations

    @property
    def out(self) -> Path:
        """Where a command would write; a failing command must leave nothing here."""
        return self.tmp / "out"

    @property
    def bad(self) -> Path:
        path = self.tmp / "bad"
        path.mkdir(exist_ok=True)
        return path

    @property
    def data(self) -> Path:
        """A fresh copy of the clean corpus (made on first use), its wav.scp pointing at the copy's audio."""
        if self._data is None:
            target = self.tmp / "data"
            shutil.copytree(self.corpus, target)
            scp = target / "wav.scp"
            scp.write_text(scp.read_text(encoding="utf-8").replace(str(self.corpus), str(target)), encoding="utf-8")
            self._data = target
        return self._data

    def ids(self) -> list[str]:
        return [line.split()[0] for line in (self.data / "wav.scp").read_text(encoding="utf-8").splitlines()]

    def fmt(self, template: str) -> str:
        return template.format(data=self.data, out=self.out, bad=self.bad, run=self.run, tmp=self.tmp)

    # ------------------------------------------------------------------ tables

    def lines(self, name: str) -> list[str]:
        return (self.data / name).read_text(encoding="utf-8").splitlines()

    def write_lines(self, name: str, lines: list[str], newline: str = "\n") -> Path:
        path = self.data / name
        path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
        return path

    def set_line(self, name: str, number: int, text: str) -> Path:
        """Replace 1-based line ``number`` of table ``name``."""
        lines = self.lines(name)
        lines[number - 1] = text
        return self.write_lines(name, lines)

    def point_wav(self, audio: Path, line: int = 2) -> Path:
        """Make wav.scp line ``line`` (its utterance id kept) point at ``audio``; returns ``audio``."""
        utt = self.lines("wav.scp")[line - 1].split()[0]
        self.set_line("wav.scp", line, f"{utt} {audio}")
        return audio

    # ------------------------------------------------------------------ audio makers

    def wav(
        self, name: str, seconds: float = 0.5, *, rate: int = RATE, channels: int = 1, subtype: str = "PCM_16"
    ) -> Path:
        path = self.bad / name
        samples = (np.random.default_rng(0).standard_normal((round(seconds * rate), channels)) * 0.1).astype(np.float32)
        soundfile.write(path, samples, rate, subtype=subtype)
        return path

    def wav_bytes(self, seconds: float = 0.5) -> bytes:
        buffer = io.BytesIO()
        samples = (np.random.default_rng(0).standard_normal(round(seconds * RATE)) * 0.1).astype(np.float32)
        soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
        return buffer.getvalue()

    def audio_missing(self) -> Path:
        return self.bad / "missing.wav"

    def audio_empty(self) -> Path:
        path = self.bad / "empty.wav"
        path.write_bytes(b"")
        return path

    def audio_truncated_header(self) -> Path:
        path = self.bad / "cut-header.wav"
        path.write_bytes(self.wav_bytes()[:22])
        return path

    def audio_truncated_data(self) -> Path:
        path = self.bad / "cut-data.wav"
        data = self.wav_bytes(1.0)
        path.write_bytes(data[: len(data) // 2])
        return path

    def audio_nonfinite(self, value: float) -> Path:
        path = self.bad / ("nan.wav" if np.isnan(value) else "inf.wav")
        samples = np.zeros(RATE // 2, dtype=np.float32)
        samples[100] = value
        soundfile.write(path, samples, RATE, subtype="FLOAT")
        return path

    def audio_zero_samples(self) -> Path:
        path = self.bad / "zero.wav"
        soundfile.write(path, np.zeros(0, dtype=np.float32), RATE, subtype="PCM_16")
        return path

    def audio_directory(self) -> Path:
        path = self.bad / "folder.wav"
        path.mkdir()
        return path

    def audio_huge_declared(self) -> Path:
        """1 s of audio whose RIFF and data chunk sizes claim about 2 GiB."""
        data = bytearray(self.wav_bytes(1.0))
        offset = data.index(b"data")
        struct.pack_into("<I", data, offset + 4, 0x7FFFFFF0)
        struct.pack_into("<I", data, 4, 0x7FFFFFF0 + offset)
        path = self.bad / "huge.wav"
        path.write_bytes(bytes(data))
        return path

    def audio_rf64_huge_declared(self) -> Path:
        """An RF64 file whose ds64 chunk declares 2**63 + 1600 bytes of audio (a sign bit set by corruption)."""
        buffer = io.BytesIO()
        samples = (np.random.default_rng(0).standard_normal(800) * 0.1).astype(np.float32)
        soundfile.write(buffer, samples, RATE, format="RF64", subtype="PCM_16")
        data = bytearray(buffer.getvalue())
        offset = data.index(b"ds64")
        size = struct.unpack_from("<Q", data, offset + 16)[0]
        struct.pack_into("<Q", data, offset + 16, size | 1 << 63)
        path = self.bad / "huge.rf64.wav"
        path.write_bytes(bytes(data))
        return path

    def audio_not_audio(self) -> Path:
        path = self.bad / "notes.wav"
        path.write_text("these are meeting notes, not audio\n" * 20, encoding="utf-8")
        return path

    def audio_multichannel(self) -> Path:
        return self.wav("eight-channels.wav", channels=8)

    def audio_8khz(self) -> Path:
        return self.wav("narrowband.wav", rate=8000)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_truncated(self) -> Path:
        source = sorted(self.run.glob("ckpt-*.pt"))[-1].read_bytes()
        path = self.bad / "cut.pt"
        path.write_bytes(source[: len(source) // 3])
        return path

    def checkpoint_random(self) -> Path:
        path = self.bad / "random.pt"
        path.write_bytes(np.random.default_rng(1).bytes(4096))
        return path

    def checkpoint_malicious(self, zipped: bool = True) -> Path:
        """A pickle whose loading creates ``self.marker`` (torch's zip layout, or a bare pickle)."""
        payload = _Payload(str(self.marker))
        path = self.bad / ("evil.pt" if zipped else "evil.pkl.pt")
        if zipped:
            torch.save({"model": payload, "config": {}}, path)
        else:
            path.write_bytes(pickle.dumps({"model": payload}))
        return path

    def run_with(self, checkpoint: Path) -> Path:
        """A run dir holding ``checkpoint`` as its only checkpoint (and the clean run's config)."""
        run = self.bad / "run"
        run.mkdir()
        for name in ("config.yaml",):
            if (self.run / name).exists():
                shutil.copy(self.run / name, run / name)
        shutil.copy(checkpoint, run / "ckpt-00000001.pt")
        return run


class _Payload:
    """Unpickling this opens (creates) a file: proof that a loader ran code from the file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots`` with size and modification time (what a failure must not change)."""
    state: dict[str, tuple] = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                state[os.path.join(dirpath, name)] = ("dir",)
            for name in filenames:
                full = os.path.join(dirpath, name)
                info = os.lstat(full)
                state[full] = (info.st_size, info.st_mtime_ns)
    return state
