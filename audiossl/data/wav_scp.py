"""Reading the audio of a Kaldi data dir: ``wav.scp`` entries (files or pipe commands), segments, utterances.

A ``wav.scp`` value is a path or, ending in ``|``, a shell command whose standard output is
the audio; with ``segments`` an utterance is a span of its recording. Decoding itself is
:mod:`audiossl.audio.io`'s; errors are re-anchored on the ``wav.scp`` line they came from.

.. warning::
   A ``wav.scp`` value ending in ``|`` is a shell command whose standard output is the
   audio (``sox in.sph -t wav - |``). Reading a data directory from an untrusted source
   can therefore run arbitrary commands on your machine. Pass ``allow_pipes=False``
   (``--no-pipes`` on the command line) to refuse pipe entries.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import torch

from audiossl.audio.io import audio_info, load_audio
from audiossl.data.kaldi import DataDir
from audiossl.errors import AudioError, DataError

_ARK_OFFSET = re.compile(r"\.ark:\d+$")


def read_wav_scp_entry(
    value: str,
    *,
    allow_pipes: bool = True,
    source: tuple[str | Path, int | None] | None = None,
    sample_rate: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    mono: bool = True,
    expected_channels: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read the audio a ``wav.scp`` value points to: a path, or a shell command ending in ``|``.

    ``source`` is ``(wav.scp path, line)``; errors then name that line as well as the audio.
    Pipe output must be a WAV or FLAC stream. See the module warning about pipes.
    """
    try:
        value = _check_entry(value, allow_pipes)
        if not value.endswith("|"):
            return load_audio(value, sample_rate, mono=mono, start=start, end=end, expected_channels=expected_channels)
        command = value[:-1].strip()
        name = f"command {command!r}"
        return load_audio(
            _run_pipe(command, name),
            sample_rate,
            mono=mono,
            start=start,
            end=end,
            expected_channels=expected_channels,
            name=name,
        )
    except AudioError as error:
        raise _at_source(error, source) from None


def read_wav_scp_info(
    value: str, *, allow_pipes: bool = True, source: tuple[str | Path, int | None] | None = None
) -> tuple[int, int, int]:
    """:func:`audio_info` for a ``wav.scp`` value; a pipe command is run to read its header."""
    try:
        value = _check_entry(value, allow_pipes)
        if not value.endswith("|"):
            return audio_info(value)
        command = value[:-1].strip()
        name = f"command {command!r}"
        return audio_info(_run_pipe(command, name), name=name)
    except AudioError as error:
        raise _at_source(error, source) from None


def load_utterance(
    data: DataDir,
    utt_id: str,
    sample_rate: int | None = None,
    allow_pipes: bool = True,
    *,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Read one utterance of a :class:`~audiossl.data.kaldi.DataDir` as mono float32 ``(T,)``.

    With ``segments`` the utterance is a span of its recording (end -1: to the end of the
    recording), otherwise the whole recording. ``offset``/``duration`` (seconds, relative to
    the utterance start) select a window inside the utterance, read without decoding the rest.
    """
    wav_scp = (data.path if data.path is not None else Path()) / "wav.scp"
    if data.segments is not None:
        if utt_id not in data.segments:
            raise DataError(f"utterance {utt_id!r} is not in segments", wav_scp.parent / "segments")
        segment = data.segments[utt_id]
        recording, start, end = segment.recording, segment.start, (segment.end if segment.end >= 0 else None)
    else:
        recording, start, end = utt_id, 0.0, None
    if recording not in data.wav_scp:
        raise DataError(f"recording {recording!r} (utterance {utt_id!r}) is not in wav.scp", wav_scp)
    start += offset
    if duration is not None:
        end = start + duration if end is None else min(end, start + duration)
    try:
        return read_wav_scp_entry(
            data.wav_scp[recording], allow_pipes=allow_pipes, sample_rate=sample_rate, start=start, end=end
        )
    except AudioError as error:
        raise _at_source(error, (wav_scp, _line_of(wav_scp, recording))) from None


def _check_entry(value: str, allow_pipes: bool) -> str:
    value = value.strip()
    if value.endswith("|") and not allow_pipes:
        raise AudioError(f"pipe command {value!r} refused (allow_pipes=False / --no-pipes)")
    if _ARK_OFFSET.search(value):
        raise AudioError(f"{value!r}: Kaldi archive offsets (file.ark:offset) are not supported; use audio files")
    return value


def _run_pipe(command: str, name: str) -> bytes:
    """Run a wav.scp pipe command through the shell; return its standard output."""
    # shell=True is the point of wav.scp pipes; see the module warning.
    result = subprocess.run(command, shell=True, capture_output=True, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", errors="replace").strip()[-1000:]
        raise AudioError(f"exited with status {result.returncode}: {stderr or '(no stderr)'}", name)
    if not result.stdout:
        raise AudioError("produced no output (zero-length audio)", name)
    return result.stdout


def _at_source(error: AudioError, source: tuple[str | Path, int | None] | None) -> AudioError:
    """Re-anchor an audio error on the wav.scp line it came from, keeping the audio's name."""
    if source is None:
        return error
    message = error.message if error.path is None else f"{error.path}: {error.message}"
    return AudioError(message, source[0], source[1])


def _line_of(path: str | Path, key: str) -> int | None:
    """Line number of ``key`` in a table (only looked up when reporting an error)."""
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.split(maxsplit=1)[:1] == [key.encode("utf-8")]:
                    return number
    except OSError:
        pass
    return None
