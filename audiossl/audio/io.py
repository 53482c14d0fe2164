"""Reading audio: files, spans of files, and Kaldi ``wav.scp`` entries.

Everything returns float32 tensors, mono ``(T,)`` by default or ``(C, T)``, optionally
resampled with :func:`torchaudio.functional.resample`. WAV/FLAC/OGG and the other formats
libsndfile knows are read with soundfile (only the requested span is read); MP3, M4A and
other containers are decoded with torchcodec, an optional extra (``pip install 'audiossl[codecs]'``).

Unusable audio raises :class:`~audiossl.errors.AudioError` naming the file: missing,
unreadable or corrupt, truncated (a WAV whose header declares more data than the file
holds: libsndfile would silently return the shorter audio), zero-length, NaN/Inf samples,
or an unexpected channel count.

.. warning::
   A ``wav.scp`` value ending in ``|`` is a shell command whose standard output is the
   audio (``sox in.sph -t wav - |``). Reading a data directory from an untrusted source
   can therefore run arbitrary commands on your machine. Pass ``allow_pipes=False``
   (``--no-pipes`` on the command line) to refuse pipe entries.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import soundfile
import torch
import torchaudio.functional

from audiossl.errors import AudioError, DataError

if TYPE_CHECKING:
    from audiossl.data.kaldi import DataDir

#: File extensions read with soundfile (libsndfile); anything else goes to torchcodec.
SOUNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd", ".sph", ".nist"}
    | {".w64", ".rf64", ".caf", ".raw"}
)

#: How far (seconds) a segment may run past the end of its recording before it is an error;
#: within this it is clipped to the recording (Kaldi's ``extract-segments --max-overshoot``).
MAX_SEGMENT_OVERSHOOT = 0.5

_UNKNOWN_LENGTH = 1 << 62  # libsndfile reports SF_COUNT_MAX frames for FLAC streams without a length
_CODECS_HINT = "pip install 'audiossl[codecs]'"
_ARK_OFFSET = re.compile(r"\.ark:\d+$")


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    start: float = 0.0,
    end: float | None = None,
    expected_channels: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read ``path`` (or the span ``[start, end)`` seconds of it) as float32.

    Returns ``(waveform, sample_rate)``: waveform ``(T,)`` when ``mono`` (mean of the
    channels), else ``(C, T)``; resampled to ``sample_rate`` when given. ``end`` of None
    or negative means the end of the file.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError("audio file not found", path)
    if path.is_dir():
        raise AudioError("is a directory, not an audio file", path)
    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        samples, rate = _read_soundfile(path, str(path), start, end)
    else:
        samples, rate = _read_torchcodec(path, str(path), start, end)
    return _finish(samples, rate, str(path), sample_rate, mono, expected_channels)


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """``(num_samples, sample_rate, channels)`` read from the header, without decoding.

    A WAV whose data chunk is cut short raises :class:`AudioError`. Formats read with
    torchcodec (MP3, ...) are decoded to count samples exactly: their headers are approximate.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError("audio file not found", path)
    if path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
        return _torchcodec_info(path, str(path))
    with path.open("rb") as handle:
        return _soundfile_info(handle, str(path))


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
        samples, rate = _read_stream(_run_pipe(command, name), name, start, end)
        return _finish(samples, rate, name, sample_rate, mono, expected_channels)
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
        return _stream_info(_run_pipe(command, name), name)
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


class _UnknownLength(Exception):
    """A stream (FLAC written to a pipe) whose header has no length: libsndfile cannot read it."""


def _soundfile_info(handle: BinaryIO, name: str) -> tuple[int, int, int]:
    try:
        with soundfile.SoundFile(handle) as sound:
            _check_wav_complete(handle, sound, name)
            if sound.frames >= _UNKNOWN_LENGTH:
                raise _UnknownLength
            return sound.frames, sound.samplerate, sound.channels
    except soundfile.LibsndfileError as error:
        raise AudioError(f"cannot read audio ({error.error_string})", name) from None


def _read_soundfile(source: Path | BinaryIO, name: str, start: float, end: float | None) -> tuple[torch.Tensor, int]:
    """Read ``[start, end)`` seconds with soundfile; returns ``(C, T)`` float32 and the rate."""
    handle = source.open("rb") if isinstance(source, Path) else source
    try:
        with handle, soundfile.SoundFile(handle) as sound:
            _check_wav_complete(handle, sound, name)
            rate, frames = sound.samplerate, sound.frames
            if frames >= _UNKNOWN_LENGTH:
                raise _UnknownLength
            if frames == 0:
                raise AudioError("contains no audio samples (zero length)", name)
            first, last = _span_to_frames(start, end, rate, frames, name)
            sound.seek(first)
            samples = sound.read(last - first, dtype="float32", always_2d=True)  # (T, C)
    except soundfile.LibsndfileError as error:
        raise AudioError(f"cannot read audio, corrupt or truncated? ({error.error_string})", name) from None
    if samples.shape[0] < last - first:
        raise AudioError(f"truncated: the header declares {frames} samples but reading stopped early", name)
    return torch.from_numpy(np.ascontiguousarray(samples.T)), rate  # (C, T)


def _read_stream(data: bytes, name: str, start: float, end: float | None) -> tuple[torch.Tensor, int]:
    """Decode a pipe's output: soundfile, or torchcodec when the stream has no length."""
    try:
        return _read_soundfile(io.BytesIO(data), name, start, end)
    except _UnknownLength:
        return _read_torchcodec(data, name, start, end)


def _stream_info(data: bytes, name: str) -> tuple[int, int, int]:
    try:
        return _soundfile_info(io.BytesIO(data), name)
    except _UnknownLength:
        return _torchcodec_info(data, name)


def _check_wav_complete(handle: BinaryIO, sound: soundfile.SoundFile, name: str) -> None:
    """Raise if a RIFF/WAVE data chunk declares more bytes than the file holds.

    libsndfile quietly shortens such files to the bytes present. Streamed headers (size 0
    or >= 0x7FFF0000, written by tools that cannot seek back) carry no size and are skipped.
    """
    if sound.format not in ("WAV", "WAVEX"):
        return
    position = handle.tell()
    try:
        handle.seek(0, io.SEEK_END)
        total = handle.tell()
        handle.seek(0)
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= total:
            handle.seek(offset)
            chunk = handle.read(8)
            size = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                present = total - offset - 8
                if 0 < size < 0x7FFF0000 and size > present:
                    raise AudioError(
                        f"truncated: the WAV header declares {size} bytes of audio but only {present} are present",
                        name,
                    )
                return
            offset += 8 + size + (size & 1)
    finally:
        handle.seek(position)


def _span_to_frames(start: float, end: float | None, rate: int, frames: int, name: str) -> tuple[int, int]:
    """Convert a span in seconds to frame indices, checking it lies inside the recording."""
    duration = frames / rate
    if start < 0:
        raise AudioError(f"segment start {start} s is negative", name)
    first = round(start * rate)
    if first >= frames:
        raise AudioError(f"segment start {start:.3f} s is at or past the end of the recording ({duration:.3f} s)", name)
    if end is None or end < 0:
        return first, frames
    if end <= start:
        raise AudioError(f"empty segment: end {end:.3f} s is not after start {start:.3f} s", name)
    if end > duration + MAX_SEGMENT_OVERSHOOT:
        raise AudioError(f"segment end {end:.3f} s is past the end of the recording ({duration:.3f} s)", name)
    return first, max(first + 1, min(round(end * rate), frames))


def _load_torchcodec(name: str):
    try:
        from torchcodec.decoders import AudioDecoder
    except (ImportError, OSError, RuntimeError) as error:
        raise AudioError(
            f"decoding this format needs torchcodec (and FFmpeg): {_CODECS_HINT} ({type(error).__name__}: {error})",
            name,
        ) from None
    return AudioDecoder


def _read_torchcodec(source: Path | bytes, name: str, start: float, end: float | None) -> tuple[torch.Tensor, int]:
    """Decode MP3/M4A/... (a file or bytes) with torchcodec; returns ``(C, T)`` float32 and the rate."""
    decoder_class = _load_torchcodec(name)
    try:
        decoder = decoder_class(source if isinstance(source, bytes) else str(source))
        duration = decoder.metadata.duration_seconds_from_header
        if end is not None and end >= 0:
            if end <= start:
                raise AudioError(f"empty segment: end {end:.3f} s is not after start {start:.3f} s", name)
            if duration is not None and end > duration + MAX_SEGMENT_OVERSHOOT:
                raise AudioError(f"segment end {end:.3f} s is past the end of the recording ({duration:.3f} s)", name)
            decoded = decoder.get_samples_played_in_range(start, end)
        elif start > 0:
            decoded = decoder.get_samples_played_in_range(start)
        else:
            decoded = decoder.get_all_samples()
    except (RuntimeError, ValueError) as error:
        raise AudioError(f"cannot decode audio, corrupt or unsupported? ({error})", name) from None
    return decoded.data.to(torch.float32), int(decoded.sample_rate)  # (C, T)


def _torchcodec_info(source: Path | bytes, name: str) -> tuple[int, int, int]:
    decoder_class = _load_torchcodec(name)
    try:
        decoder = decoder_class(source if isinstance(source, bytes) else str(source))
        # Container durations are approximate (MP3 padding), so count the decoded samples.
        decoded = decoder.get_all_samples()
        channels, length = decoded.data.shape  # (C, T)
        return length, int(decoded.sample_rate), channels
    except (RuntimeError, ValueError) as error:
        raise AudioError(f"cannot decode audio, corrupt or unsupported? ({error})", name) from None


def _finish(
    samples: torch.Tensor,
    rate: int,
    name: str,
    sample_rate: int | None,
    mono: bool,
    expected_channels: int | None,
) -> tuple[torch.Tensor, int]:
    """Check ``(C, T)`` samples, then mix down and resample."""
    channels, length = samples.shape
    if expected_channels is not None and channels != expected_channels:
        raise AudioError(f"has {channels} channel(s), expected {expected_channels}", name)
    if length == 0:
        raise AudioError("contains no audio samples (zero length)", name)
    finite = torch.isfinite(samples)
    if not bool(finite.all()):
        bad = ~finite.all(dim=0)
        first = int(bad.nonzero()[0, 0])
        raise AudioError(f"contains NaN/Inf samples ({int(bad.sum())} frame(s), first at {first / rate:.3f} s)", name)
    waveform = samples.mean(dim=0) if mono else samples  # (T,) or (C, T)
    if sample_rate is not None and sample_rate != rate:
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
        rate = sample_rate
    return waveform.to(torch.float32).contiguous(), rate
