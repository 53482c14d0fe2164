"""Reading audio: files, spans of files, and Kaldi ``wav.scp`` entries.

Everything returns float32 tensors, mono ``(T,)`` by default or ``(C, T)``, optionally
resampled with :func:`torchaudio.functional.resample`. WAV/FLAC/OGG and the other formats
libsndfile knows are read with soundfile (only the requested span is read); MP3, M4A and
other containers are decoded with torchcodec, an optional extra (``pip install 'audiossl[codecs]'``).

Unusable audio raises :class:`~audiossl.errors.AudioError` naming the file: missing,
unreadable or corrupt, truncated (a WAV, RF64 or Wave64 header declaring more data than the
file holds, in any of its sizes: libsndfile would silently return the shorter audio; sizes
that mean "unknown", written by tools streaming to a pipe, are accepted), zero-length,
NaN/Inf samples, or an unexpected channel count.

Kaldi ``wav.scp`` entries (paths or pipe commands), segments and the utterances of a data
dir are read by :mod:`audiossl.data.wav_scp`, one floor up.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile
import torch
import torchaudio.functional

from audiossl.audio.moved import moved_attribute
from audiossl.errors import AudioError, interface

logger = logging.getLogger(__name__)

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


def load_audio(
    path: str | Path | bytes,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    start: float = 0.0,
    end: float | None = None,
    expected_channels: int | None = None,
    name: str | None = None,
    channel: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read ``path`` (or the span ``[start, end)`` seconds of it) as float32.

    Returns ``(waveform, sample_rate)``: waveform ``(T,)`` when ``mono``, else ``(C, T)``;
    resampled to ``sample_rate`` when given. ``end`` of None or negative means the end of the
    file. ``path`` may also be the encoded bytes of a WAV or FLAC stream (a command's output);
    ``name`` then says where they came from in errors, and a stream without a length is
    decoded with torchcodec.

    Multi-channel audio: ``channel`` None mixes the channels down to mono (their mean; the
    first such file of the process is logged, once), an index (0 = the first channel) keeps
    that channel only (``(1, T)`` when not ``mono``); a file without that channel is an
    :class:`AudioError`. ``expected_channels`` is checked against the file's channel count.
    """
    if isinstance(path, bytes):
        name = name or "audio stream"
        samples, rate = _read_stream(path, name, start, end)
        return _finish(samples, rate, name, sample_rate, mono, expected_channels, channel)
    path = Path(path)
    if not path.exists():
        raise AudioError("audio file not found", path)
    if path.is_dir():
        raise AudioError("is a directory, not an audio file", path)
    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        samples, rate = _read_soundfile(path, str(path), start, end)
    else:
        samples, rate = _read_torchcodec(path, str(path), start, end)
    return _finish(samples, rate, str(path), sample_rate, mono, expected_channels, channel)


def audio_info(path: str | Path | bytes, *, name: str | None = None) -> tuple[int, int, int]:
    """``(num_samples, sample_rate, channels)`` read from the header, without decoding.

    A WAV whose data chunk is cut short raises :class:`AudioError`. Formats read with
    torchcodec (MP3, ...) are decoded to count samples exactly: their headers are approximate.
    ``path`` may be the bytes of an encoded stream, as for :func:`load_audio`.
    """
    if isinstance(path, bytes):
        return _stream_info(path, name or "audio stream")
    path = Path(path)
    if not path.exists():
        raise AudioError("audio file not found", path)
    if path.suffix.lower() not in SOUNDFILE_EXTENSIONS:
        return _torchcodec_info(path, str(path))
    with path.open("rb") as handle:
        return _soundfile_info(handle, str(path))


#: Names that moved up to audiossl.data (see __getattr__).
_MOVED = {name: "audiossl.data.wav_scp" for name in ("load_utterance", "read_wav_scp_entry", "read_wav_scp_info")}


def __getattr__(name: str) -> object:
    """Deprecated: the wav.scp readers moved to :mod:`audiossl.data.wav_scp`; kept for one release."""
    return moved_attribute(__name__, _MOVED, name)


class SpanError(AudioError):
    """A span ``[start, end)`` that does not lie inside its recording (a bad ``segments`` line, usually).

    Readers one floor up re-anchor it on the segments line the span came from.
    """


class _UnknownLength(Exception):
    """A stream (FLAC written to a pipe) whose header has no length: libsndfile cannot read it."""


def _soundfile_info(handle: BinaryIO, name: str) -> tuple[int, int, int]:
    # Header sizes are checked before libsndfile opens the file: it seeks to where they point.
    _check_wav_complete(handle, name, stream=isinstance(handle, io.BytesIO))
    try:
        with soundfile.SoundFile(handle) as sound:
            if sound.frames >= _UNKNOWN_LENGTH:
                raise _UnknownLength
            return sound.frames, sound.samplerate, sound.channels
    except soundfile.LibsndfileError as error:
        raise AudioError(f"cannot read audio ({error.error_string})", name) from None


def _read_soundfile(source: Path | BinaryIO, name: str, start: float, end: float | None) -> tuple[torch.Tensor, int]:
    """Read ``[start, end)`` seconds with soundfile; returns ``(C, T)`` float32 and the rate."""
    handle = source.open("rb") if isinstance(source, Path) else source
    try:
        with handle:
            # Header sizes are checked before libsndfile opens the file: it seeks to where they point.
            _check_wav_complete(handle, name, stream=not isinstance(source, Path))
            with soundfile.SoundFile(handle) as sound:
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


#: Sony Wave64 (W64) GUIDs: the file header and the chunks it is made of.
_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_W64_WAVE = bytes.fromhex("77617665f3acd3118cd100c04f8edb8a")
_W64_DATA = bytes.fromhex("64617461f3acd3118cd100c04f8edb8a")
#: Sizes that mean "unknown" in a header written by a tool that could not seek back (a pipe).
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
#: 32-bit sizes at or above this are placeholders of streaming writers (sox: 0x7FFFF000);
#: accepted only in a pipe's output, never in a file, whose size is known.
_STREAM_PLACEHOLDER = 0x7FFF0000
#: A RIFF size may exceed the file by this much (writers that count the 8-byte RIFF header,
#: a missing pad byte) before the file counts as cut short.
_RIFF_SLACK = 9
#: Chunks walked at most per header (a file of millions of tiny chunks is not audio).
_MAX_CHUNKS = 4096


def _check_wav_complete(handle: BinaryIO, name: str, *, stream: bool = False) -> None:
    """Raise if a WAV, RF64/BW64 or Wave64 header declares more bytes than the file holds.

    libsndfile quietly shortens such files to the bytes present. Every declared size is
    checked: the RIFF (or RF64 ``ds64`` / W64) file size, the size of each chunk before and
    after the audio, and the data chunk's. Sizes that mean "unknown" (0 or all bits set,
    written by tools that stream to a pipe, e.g. ffmpeg) are not checked; in a pipe's output
    (``stream``) neither are the large placeholders of other streaming writers (sox).
    """
    position = handle.tell()
    try:
        handle.seek(0, io.SEEK_END)
        total = handle.tell()
        handle.seek(0)
        header = handle.read(40)
        if header[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and header[8:12] == b"WAVE":
            problem = _riff_size_problem(handle, header, total, stream)
        elif header[:16] == _W64_RIFF and header[24:40] == _W64_WAVE:
            problem = _w64_size_problem(handle, header, total, stream)
        else:
            return
    finally:
        handle.seek(position)
    if problem is not None:
        raise AudioError(f"truncated: {problem}", name)


def _hint(size: int) -> str:
    """Advice for a 32-bit size that looks like a streaming writer's placeholder, found in a file."""
    if not _STREAM_PLACEHOLDER <= size < 0xFFFFFFFF:
        return ""
    return (
        " (a placeholder size? if the file was written to a pipe by a tool that could not seek back to fill in "
        "the sizes, rewrite it, e.g. `ffmpeg -i IN.wav OUT.wav`)"
    )


def _unknown(size: int, stream: bool, bits: int = 32) -> bool:
    return size in _UNKNOWN_SIZES or (stream and bits == 32 and size >= _STREAM_PLACEHOLDER)


def _riff_size_problem(handle: BinaryIO, header: bytes, total: int, stream: bool) -> str | None:
    """What a RIFF/RIFX/RF64/BW64 header declares beyond the file's ``total`` bytes, or None.

    Chunks are walked up to the end the RIFF size declares (bytes after it, such as an ID3 tag
    appended to the file, are not chunks), or up to a streamed data chunk of unknown size.
    """
    order = "big" if header[:4] == b"RIFX" else "little"
    kind = header[:4].decode("ascii")
    riff_size = int.from_bytes(header[4:8], order)
    data_size: int | None = None  # the data chunk's 64-bit size from ds64 (RF64/BW64)
    bits = 32
    if kind in ("RF64", "BW64"):
        if header[12:16] != b"ds64":
            return None  # not the layout libsndfile reads; leave it to libsndfile
        bits = 64
        riff_size = int.from_bytes(header[20:28], "little")
        data_size = int.from_bytes(header[28:36], "little")
        if data_size in _UNKNOWN_SIZES:
            data_size = None
    riff_known = not _unknown(riff_size, stream, bits)
    end = min(total, riff_size + 8) if riff_known else total
    offset = 12
    for _ in range(_MAX_CHUNKS):
        if offset + 8 > end:
            break
        handle.seek(offset)
        chunk = handle.read(8)
        chunk_id, size = chunk[:4], int.from_bytes(chunk[4:8], order)
        present = total - offset - 8
        if chunk_id == b"data":
            if data_size is not None and size == 0xFFFFFFFF:
                size = data_size  # RF64: the real size is in ds64
            elif _unknown(size, stream):
                break  # a streamed data chunk runs to the end of the file
            if size > present:
                return f"the header declares {size} bytes of audio but only {present} are present" + _hint(size)
        elif size > present:
            label = chunk_id.decode("latin-1").strip() or "?"
            return f"the header's {label!r} chunk declares {size} bytes but only {present} are present" + _hint(size)
        offset += 8 + size + (size & 1)
    if riff_known and riff_size + 8 > total + _RIFF_SLACK:
        declared = f"the {kind} header declares a file of {riff_size + 8} bytes but only {total} are present"
        return declared + (_hint(riff_size) if bits == 32 else "")
    return None


def _w64_size_problem(handle: BinaryIO, header: bytes, total: int, stream: bool) -> str | None:
    """What a Sony Wave64 header declares beyond the file's ``total`` bytes, or None.

    W64 sizes are 64-bit and count the chunk's own 24-byte header; chunks are 8-byte aligned.
    """
    riff_size = int.from_bytes(header[16:24], "little")
    riff_known = not _unknown(riff_size, stream, 64)
    end = min(total, riff_size) if riff_known else total
    offset = 40
    for _ in range(_MAX_CHUNKS):
        if offset + 24 > end:
            break
        handle.seek(offset)
        chunk = handle.read(24)
        guid, size = chunk[:16], int.from_bytes(chunk[16:24], "little")
        present = total - offset - 24
        if guid == _W64_DATA and _unknown(size, stream, 64):
            break
        if size < 24:
            break  # malformed; libsndfile judges it
        if size - 24 > present:
            if guid == _W64_DATA:
                return f"the header declares {size - 24} bytes of audio but only {present} are present"
            label = guid[:4].decode("latin-1").strip() or "?"
            return f"the header's {label!r} chunk declares {size - 24} bytes but only {present} are present"
        offset += (size + 7) & ~7
    if riff_known and riff_size > total + _RIFF_SLACK:
        return f"the W64 header declares a file of {riff_size} bytes but only {total} are present"
    return None


def _span_to_frames(start: float, end: float | None, rate: int, frames: int, name: str) -> tuple[int, int]:
    """Convert a span in seconds to frame indices, checking it lies inside the recording."""
    duration = frames / rate
    if start < 0:
        raise SpanError(f"segment start {start} s is negative", name)
    first = round(start * rate)
    if first >= frames:
        raise SpanError(f"segment start {start:.3f} s is at or past the end of the recording ({duration:.3f} s)", name)
    if end is None or end < 0:
        return first, frames
    if end <= start:
        raise SpanError(f"empty segment: end {end:.3f} s is not after start {start:.3f} s", name)
    if end > duration + MAX_SEGMENT_OVERSHOOT:
        raise SpanError(f"segment end {end:.3f} s is past the end of the recording ({duration:.3f} s)", name)
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
                raise SpanError(f"empty segment: end {end:.3f} s is not after start {start:.3f} s", name)
            if duration is not None and end > duration + MAX_SEGMENT_OVERSHOOT:
                raise SpanError(f"segment end {end:.3f} s is past the end of the recording ({duration:.3f} s)", name)
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
    channel: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Check ``(C, T)`` samples, then choose or mix down the channels and resample."""
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
    waveform = select_channels(samples, name, channel=channel, mono=mono)  # (T,) or (C, T)
    if sample_rate is not None and sample_rate != rate:
        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
        rate = sample_rate
    return waveform.to(torch.float32).contiguous(), rate


_mixdown_logged = False


def channel_option(value: object = "N") -> str:
    """How the user chooses the channel, in their interface (for messages)."""
    if interface() == "cli":
        return f"`--channel {value}` (audiossl extract) or `data.channel: {value}` in a config"
    return f"channel={value}"


def select_channels(samples: torch.Tensor, name: str, *, channel: int | None = None, mono: bool = True) -> torch.Tensor:
    """Channels ``(C, T)`` of ``name`` as read: channel ``channel`` only, or mixed down when ``mono``.

    ``channel`` None and ``mono``: the mean of the channels (T,); the first multi-channel file
    of the process is logged, naming it, and later ones are mixed silently. ``channel`` an
    index: that channel, (T,) when ``mono`` else (1, T); out of range raises :class:`AudioError`.
    ``channel`` None and not ``mono``: every channel, as read.
    """
    global _mixdown_logged
    channels = samples.shape[0]
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < channels:
            raise AudioError(
                f"channel {channel!r} does not exist: the audio has {channels} channel(s), numbered 0 to "
                f"{channels - 1} (the channel was chosen by {channel_option(channel)})",
                name,
            )
        chosen = samples[channel : channel + 1]  # (1, T)
        return chosen[0] if mono else chosen
    if not mono:
        return samples
    if channels > 1 and not _mixdown_logged:
        _mixdown_logged = True
        logger.warning(
            "%s: %d channels mixed down to mono (the mean of the channels); choose one channel with %s. "
            "Logged once per process: other multi-channel files are mixed the same way without a message",
            name,
            channels,
            channel_option(),
        )
    return samples.mean(dim=0)  # (T,)
