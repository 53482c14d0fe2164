"""Reading the audio of a Kaldi data dir: ``wav.scp`` entries (files or pipe commands), segments, utterances.

A ``wav.scp`` value is a path or, ending in ``|``, a shell command whose standard output is
the audio; with ``segments`` an utterance is a span of its recording. Decoding itself is
:mod:`audiossl.audio.io`'s; errors are re-anchored on the ``wav.scp`` line they came from.

Pipes are refused unless allowed
--------------------------------
A ``wav.scp`` value ending in ``|`` is a shell command whose standard output is the audio
(``sox in.sph -t wav - |``), so reading a data directory from an untrusted source could run
arbitrary commands. Every reader here (and so every command and plugin: they all read audio
through this module) refuses pipe entries unless the user allows them, with an
:class:`PipeRefused` error naming ``wav.scp:LINE``. One policy, four ways to set it:

* Python: ``allow_pipes=True`` on :func:`read_wav_scp_entry`, :func:`read_wav_scp_info`,
  :func:`load_utterance`, :func:`check_pipes`, :class:`~audiossl.data.dataset.AudioDataset`,
  ``validate_data_dir``/``fix_data_dir``, ``extract_embeddings``. An explicit ``True``/``False``
  wins; ``None`` (the default) means the process policy below.
* The process policy: the environment variable ``AUDIOSSL_ALLOW_PIPES=1`` (:data:`PIPES_ENV`;
  ``0``/unset refuses). DataLoader workers and ``torchrun`` children inherit it; recipes set it.
* The command line: the global flag ``audiossl --allow-pipes <command> ...`` sets that variable
  for the command (and so for its workers and child processes). The old per-command
  ``--no-pipes`` flags still parse: they refuse pipes even when the variable allows them.
* Configs: ``data.allow_pipes: true`` in a pretraining config allows them for that run
  (:func:`allowing_pipes` around it); ``false`` (the default) leaves the process policy.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import torch

from audiossl.audio.io import SpanError, audio_info, load_audio
from audiossl.data.kaldi import DataDir, Segment
from audiossl.errors import AudioError, ConfigError, DataError, interface, spell_option

_ARK_OFFSET = re.compile(r"\.ark:\d+$")

#: The process policy (see the module doc): ``1`` allows wav.scp pipe commands, ``0`` or unset refuses.
PIPES_ENV = "AUDIOSSL_ALLOW_PIPES"
_YES = {"1", "true", "yes", "on"}
_NO = {"", "0", "false", "no", "off"}


class PipeRefused(AudioError):
    """A ``wav.scp`` pipe command that was not run because pipes are not allowed (see the module doc)."""


def pipes_allowed(allow_pipes: bool | None = None) -> bool:
    """Whether wav.scp pipe commands may run: ``allow_pipes`` when given, else the process policy."""
    if allow_pipes is not None:
        return bool(allow_pipes)
    value = os.environ.get(PIPES_ENV, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    raise ConfigError(f"environment variable {PIPES_ENV}={value!r}: expected 1 (allow wav.scp pipes) or 0 (refuse)")


@contextlib.contextmanager
def allowing_pipes(allow: bool = True) -> Iterator[None]:
    """Allow pipes as the process policy inside the block (``allow`` False: leave the policy as it is).

    Sets :data:`PIPES_ENV`, so DataLoader workers and child processes started inside inherit it;
    the previous value is restored on exit.
    """
    if not allow:
        yield
        return
    previous = os.environ.get(PIPES_ENV)
    os.environ[PIPES_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PIPES_ENV, None)
        else:
            os.environ[PIPES_ENV] = previous


def is_pipe(value: str) -> bool:
    """Whether a ``wav.scp`` value is a shell command (ends in ``|``)."""
    return value.rstrip().endswith("|")


def check_pipes(data: DataDir, allow_pipes: bool | None = None) -> None:
    """Refuse, before any audio is read, a data dir with a pipe entry when pipes are not allowed.

    Commands call this when they open a data dir, so a refused dir fails at once (not in a
    DataLoader worker, not after writing part of an output). The error names the first pipe's
    ``wav.scp:LINE``.
    """
    if pipes_allowed(allow_pipes):
        return
    for recording, value in data.wav_scp.items():
        if is_pipe(value):
            if data.path is None:
                raise refusal(value, allow_pipes, Path("wav.scp"))
            wav_scp = data.path / "wav.scp"
            raise refusal(value, allow_pipes, wav_scp, _line_of(wav_scp, recording))


def refusal(
    value: str, allow_pipes: bool | None, path: str | Path | None = None, line: int | None = None
) -> PipeRefused:
    """The error for a refused pipe entry: what was refused, why, and how to allow it (in the user's interface)."""
    command = value.strip()
    if len(command) > 160:
        command = command[:157] + "..."
    allow = spell_option("allow_pipes", True, flag="--allow-pipes")
    if interface() == "cli":
        allow = f"the global flag {allow} (audiossl --allow-pipes <command> ...)"
    if allow_pipes is False:
        refuser = "--no-pipes" if interface() == "cli" else "allow_pipes=False"
        why = f"refused by {refuser}; to run it, drop {refuser} and use {allow} or {PIPES_ENV}=1"
    else:
        why = (
            "refused: wav.scp commands run through the shell and run only when allowed; "
            f"if you trust this data dir, use {allow} or set {PIPES_ENV}=1"
        )
    return PipeRefused(f"pipe command {command!r} {why}", path, line)


def read_wav_scp_entry(
    value: str,
    *,
    allow_pipes: bool | None = None,
    source: tuple[str | Path, int | None] | None = None,
    sample_rate: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    mono: bool = True,
    expected_channels: int | None = None,
    channel: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read the audio a ``wav.scp`` value points to: a path, or a shell command ending in ``|``.

    ``source`` is ``(wav.scp path, line)``; errors then name that line as well as the audio.
    ``channel``: None mixes multi-channel audio down to mono, an index keeps that channel
    (see :func:`~audiossl.audio.io.load_audio`).
    Pipe output must be a WAV or FLAC stream. A pipe runs only when allowed: ``allow_pipes``,
    or with None the process policy (see the module doc); else :class:`PipeRefused`.
    """
    try:
        value = _check_entry(value, allow_pipes)
        if not value.endswith("|"):
            return load_audio(
                value,
                sample_rate,
                mono=mono,
                start=start,
                end=end,
                expected_channels=expected_channels,
                channel=channel,
            )
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
            channel=channel,
        )
    except AudioError as error:
        raise _at_source(error, source) from None


def read_wav_scp_info(
    value: str, *, allow_pipes: bool | None = None, source: tuple[str | Path, int | None] | None = None
) -> tuple[int, int, int]:
    """:func:`audio_info` for a ``wav.scp`` value; a pipe command (when allowed) is run to read its header."""
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
    allow_pipes: bool | None = None,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    channel: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Read one utterance of a :class:`~audiossl.data.kaldi.DataDir` as mono float32 ``(T,)``.

    With ``segments`` the utterance is a span of its recording (end -1: to the end of the
    recording), otherwise the whole recording. ``offset``/``duration`` (seconds, relative to
    the utterance start) select a window inside the utterance, read without decoding the rest.
    ``allow_pipes`` as in :func:`read_wav_scp_entry`, ``channel`` as in :func:`~audiossl.audio.io.load_audio`.
    Errors name the recording's ``wav.scp:LINE``; a segment that does not fit its recording
    (end past the recording's end, start at or past it) names ``segments:LINE`` and the segment id.
    """
    wav_scp = (data.path if data.path is not None else Path()) / "wav.scp"
    segment = None
    if data.segments is not None:
        if utt_id not in data.segments:
            raise DataError(f"utterance {utt_id!r} is not in segments", wav_scp.parent / "segments")
        segment = data.segments[utt_id]
        recording, start, end = segment.recording, segment.start, (segment.end if segment.end >= 0 else None)
    else:
        recording, start, end = utt_id, 0.0, None
    if recording not in data.wav_scp:
        if segment is not None:
            segments = wav_scp.parent / "segments"
            raise DataError(
                f"segment {utt_id!r}: its recording {recording!r} is not in {wav_scp}",
                segments,
                _segment_line(segments, utt_id, segment),
            )
        raise DataError(f"recording {recording!r} (utterance {utt_id!r}) is not in wav.scp", wav_scp)
    start += offset
    if duration is not None:
        end = start + duration if end is None else min(end, start + duration)
    try:
        return read_wav_scp_entry(
            data.wav_scp[recording],
            allow_pipes=allow_pipes,
            sample_rate=sample_rate,
            start=start,
            end=end,
            channel=channel,
        )
    except SpanError as error:
        if segment is None:
            raise _at_source(error, (wav_scp, _line_of(wav_scp, recording))) from None
        raise _segment_error(error, wav_scp, utt_id, segment) from None
    except AudioError as error:
        raise _at_source(error, (wav_scp, _line_of(wav_scp, recording))) from None


def describe_utterance(data: DataDir, utt_id: str) -> str:
    """Where an utterance's audio comes from, for messages: ``utterance 'u1' (data/wav.scp:3: /a/u1.wav)``.

    With segments the segments line and the recording come first. Lines are looked up in the
    files, so call it only when reporting.
    """
    base = data.path if data.path is not None else Path()
    wav_scp = base / "wav.scp"
    recording, parts = utt_id, []
    if data.segments is not None and utt_id in data.segments:
        segment = data.segments[utt_id]
        recording = segment.recording
        line = _segment_line(base / "segments", utt_id, segment)
        parts.append(f"{base / 'segments'}{'' if line is None else f':{line}'} of recording {recording!r}")
    line = _line_of(wav_scp, recording)
    where = f"{wav_scp}{'' if line is None else f':{line}'}"
    value = data.wav_scp.get(recording)
    parts.append(where if value is None else f"{where}: {value.strip()}")
    return f"utterance {utt_id!r} ({', '.join(parts)})"


def _segment_line(segments: Path, utt_id: str, segment: Segment) -> int | None:
    line = getattr(segment, "line", None)  # set when the DataDir was read from disk
    return line if line is not None else _line_of(segments, utt_id)


def _segment_error(error: SpanError, wav_scp: Path, utt_id: str, segment: Segment) -> SpanError:
    """A span error of a segment, anchored on its ``segments`` line and naming the segment and the audio."""
    segments = wav_scp.parent / "segments"
    end = "the end" if segment.end < 0 else f"{segment.end:g} s"
    audio = error.path or "the audio"
    where = f"{wav_scp}:{line}" if (line := _line_of(wav_scp, segment.recording)) is not None else str(wav_scp)
    return SpanError(
        f"segment {utt_id!r} ({segment.start:g} s to {end} of recording {segment.recording!r}) does not fit its "
        f"recording: {error.message} [recording: {audio}, {where}]",
        segments,
        _segment_line(segments, utt_id, segment),
    )


def _check_entry(value: str, allow_pipes: bool | None) -> str:
    value = value.strip()
    if value.endswith("|") and not pipes_allowed(allow_pipes):
        raise refusal(value, allow_pipes)
    if _ARK_OFFSET.search(value):
        raise AudioError(f"{value!r}: Kaldi archive offsets (file.ark:offset) are not supported; use audio files")
    return value


def _run_pipe(command: str, name: str) -> bytes:
    """Run a wav.scp pipe command through the shell; return its standard output."""
    # shell=True is the point of wav.scp pipes; only reached when allowed (see the module doc).
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
    return type(error)(message, source[0], source[1])  # a PipeRefused stays one


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
