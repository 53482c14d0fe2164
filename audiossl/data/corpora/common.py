"""Helpers shared by the corpus preparers: locating the corpus, audio durations, empty data dirs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import soundfile

from audiossl.data.kaldi import DataDir
from audiossl.errors import AudioError, DataError


def corpus_root(path: str | Path, marker: str, corpus: str, how_to_get: str, inner: Iterable[str] = ()) -> Path:
    """The folder of ``corpus`` that contains ``marker`` (a sub-folder or file name).

    ``path`` may be that folder or one of its usual parents (``inner``: names of the folder the
    archives extract into, e.g. ``LibriSpeech``). A missing folder is a :class:`DataError` that
    says where the corpus must be put and how to obtain it.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{corpus} not found: put the corpus here ({how_to_get})", path)
    for candidate in (path, *(path / name for name in inner)):
        if (candidate / marker).exists():
            return candidate
    raise DataError(f"no {marker!r} inside: this is not the {corpus} folder ({how_to_get})", path)


def audio_duration(path: Path) -> tuple[float, int | None]:
    """``(seconds, samples)`` read from the file header without decoding.

    WAV and FLAC headers are exact (samples known); compressed containers (VoxCeleb2's m4a) give
    torchcodec's header duration and no sample count, because counting would decode the file.
    """
    if path.suffix.lower() in (".wav", ".flac"):
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, OSError) as error:
            raise AudioError(f"cannot read the audio header: {error}", path) from None
        if info.frames <= 0:
            raise AudioError("recording is empty", path)
        return info.frames / info.samplerate, int(info.frames)
    try:
        from torchcodec.decoders import AudioDecoder
    except ImportError as error:
        raise AudioError(f"reading {path.suffix} files needs torchcodec and FFmpeg ({error})", path) from None
    try:
        metadata = AudioDecoder(str(path)).metadata
    except (RuntimeError, ValueError) as error:
        raise AudioError(f"cannot read the audio header: {error}", path) from None
    seconds = metadata.duration_seconds_from_header
    if not seconds or seconds <= 0:
        raise AudioError("the header gives no duration (empty or corrupt file?)", path)
    return float(seconds), None


def new_data_dir(text: bool = False, samples: bool = True, labels: Iterable[str] = ()) -> DataDir:
    """An empty data dir with the tables a preparer fills (``text``, ``utt2num_samples``, label tables)."""
    return DataDir(
        text={} if text else None,
        utt2dur={},
        utt2num_samples={} if samples else None,
        labels={name: {} for name in labels},
    )


def add_utterance(data: DataDir, utt: str, path: Path, speaker: str) -> None:
    """Add one recording as utterance ``utt`` of ``speaker``: wav.scp (absolute), utt2spk, durations."""
    seconds, samples = audio_duration(path)
    data.wav_scp[utt] = str(path.resolve())
    data.utt2spk[utt] = speaker
    data.utt2dur[utt] = seconds
    if data.utt2num_samples is not None:
        if samples is None:  # a compressed file among exact ones: no sample counts for this dir
            data.utt2num_samples = None
        else:
            data.utt2num_samples[utt] = samples


def visible(paths: Iterable[Path]) -> list[Path]:
    """Sorted paths without hidden files (macOS ``._*`` forks, ``.DS_Store``)."""
    return sorted(p for p in paths if not p.name.startswith("."))
