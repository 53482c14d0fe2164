"""Every size a WAV / RF64 / Wave64 header declares is checked against the file (issue 13).

libsndfile silently shortens a file whose header declares more than it holds; audiossl refuses
it, naming the file and what is declared vs present. Sizes that mean "unknown" (0xFFFFFFFF,
written by ffmpeg streaming to a pipe) stay readable, and so do the large placeholders of other
streaming writers (sox: 0x7FFFF000) in a pipe's output, though not in a file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from audiossl.audio.io import audio_info, load_audio
from audiossl.errors import AudioError

RATE = 16000
W64_DATA = bytes.fromhex("64617461f3acd3118cd100c04f8edb8a")
HUGE32 = 0x90000000  # 2.25 GiB: more than 2 GiB, and above the old check's 0x7FFF0000 cut-off
HUGE64 = 0x190000000  # 6.25 GiB


def _stereo(frames: int = RATE) -> np.ndarray:
    return np.random.default_rng(1).uniform(-0.5, 0.5, size=(frames, 2)).astype(np.float32)


def _written(tmp_path: Path, fmt: str, subtype: str = "PCM_16") -> tuple[Path, bytes]:
    path = tmp_path / f"ok.{fmt.lower()}"
    soundfile.write(path, _stereo(), RATE, format=fmt, subtype=subtype)
    return path, path.read_bytes()


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _refused(path: Path, *expected: str) -> str:
    """Both readers refuse ``path``; the message names the file and every ``expected`` part."""
    messages = []
    for read in (load_audio, audio_info):
        with pytest.raises(AudioError) as error:
            read(path)
        message = str(error.value)
        assert message.startswith(f"{path}: truncated: "), message
        for part in expected:
            assert part in message, (part, message)
        messages.append(message)
    assert soundfile.read(path)[0].shape[0] > 0  # libsndfile alone reads it without a word
    return messages[0]


def test_wav_data_chunk_declaring_more_than_2_gib_in_a_1_s_file(tmp_path: Path) -> None:
    _, data = _written(tmp_path, "WAV")
    assert data[36:40] == b"data"
    path = tmp_path / "huge.wav"
    path.write_bytes(_patched(data, 40, "<I", HUGE32))
    assert soundfile.info(path).frames == RATE  # what used to be accepted
    _refused(path, f"declares {HUGE32} bytes of audio", f"only {RATE * 4} are present", "placeholder size?")


def test_wav_riff_size_larger_than_the_file(tmp_path: Path) -> None:
    _, data = _written(tmp_path, "WAV")
    path = tmp_path / "riff.wav"
    path.write_bytes(_patched(data, 4, "<I", HUGE32))
    _refused(path, f"RIFF header declares a file of {HUGE32 + 8} bytes", f"only {len(data)} are present")


def test_cut_wav_names_the_audio_bytes(tmp_path: Path) -> None:
    _, data = _written(tmp_path, "WAV")
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:30000])
    message = _refused(path, f"declares {RATE * 4} bytes of audio but only {30000 - 44} are present")
    assert "placeholder" not in message  # the pipe advice is only for placeholder-sized fields


def test_placeholder_sizes_in_a_file_are_refused_but_accepted_from_a_pipe(tmp_path: Path) -> None:
    """sox writing to a pipe cannot know the length and writes 0x7FFFF000; a file's size is known."""
    path, data = _written(tmp_path, "WAV")
    streamed = _patched(_patched(data, 40, "<I", 0x7FFFF000), 4, "<I", 0x7FFFF000 + 36)
    placeholder = tmp_path / "placeholder.wav"
    placeholder.write_bytes(streamed)
    _refused(placeholder, "declares 2147479552 bytes of audio", "placeholder size?")
    expected, _ = load_audio(path, mono=False)
    from_pipe, rate = load_audio(streamed, mono=False, name="command 'sox ...'")
    assert rate == RATE
    torch.testing.assert_close(from_pipe, expected, rtol=0, atol=0)
    assert audio_info(streamed) == (RATE, RATE, 2)


@pytest.mark.parametrize("as_bytes", [False, True], ids=["file", "stream"])
def test_unknown_sizes_of_a_streamed_wav_are_still_read(tmp_path: Path, as_bytes: bool) -> None:
    """ffmpeg writing WAV to a pipe leaves the RIFF and data sizes at 0xFFFFFFFF ("unknown")."""
    path, data = _written(tmp_path, "WAV")
    streamed = _patched(_patched(data, 4, "<I", 0xFFFFFFFF), 40, "<I", 0xFFFFFFFF)
    source: Path | bytes = streamed
    if not as_bytes:
        source = tmp_path / "streamed.wav"
        source.write_bytes(streamed)
    got, rate = load_audio(source, mono=False)
    reference = soundfile.read(path, dtype="float32", always_2d=True)[0].T
    assert rate == RATE
    np.testing.assert_array_equal(got.numpy(), reference)
    assert audio_info(source) == (RATE, RATE, 2)


def test_bytes_after_the_riff_end_are_not_chunks(tmp_path: Path) -> None:
    """An ID3v1 tag appended to a complete WAV is outside the RIFF: its bytes are no chunk size."""
    path, data = _written(tmp_path, "WAV")
    tagged = tmp_path / "tagged.wav"
    tagged.write_bytes(data + b"TAG" + b"\xff" * 125)
    np.testing.assert_array_equal(load_audio(tagged)[0].numpy(), load_audio(path)[0].numpy())


@pytest.mark.parametrize("fmt", ["RF64", "W64"])
def test_valid_rf64_and_w64_equal_soundfile(tmp_path: Path, fmt: str) -> None:
    path, _ = _written(tmp_path, fmt, subtype="FLOAT")
    assert soundfile.info(path).format == fmt
    reference = soundfile.read(path, dtype="float32", always_2d=True)[0].T  # (C, T)
    got, rate = load_audio(path, mono=False)
    assert rate == RATE
    np.testing.assert_array_equal(got.numpy(), reference)
    span, _ = load_audio(path, mono=False, start=0.25, end=0.5)
    np.testing.assert_array_equal(span.numpy(), reference[:, 4000:8000])
    assert audio_info(path) == (RATE, RATE, 2)


def test_rf64_ds64_sizes_larger_than_the_file(tmp_path: Path) -> None:
    _, data = _written(tmp_path, "RF64")
    assert data[:4] == b"RF64" and data[12:16] == b"ds64"  # ds64: riff size at 20, data size at 28 (64-bit)
    riff = tmp_path / "riff.rf64"
    riff.write_bytes(_patched(data, 20, "<Q", HUGE64))
    _refused(riff, f"RF64 header declares a file of {HUGE64 + 8} bytes", f"only {len(data)} are present")
    audio = tmp_path / "data.rf64"
    audio.write_bytes(_patched(data, 28, "<Q", HUGE64))
    _refused(audio, f"declares {HUGE64} bytes of audio", f"only {RATE * 4} are present")
    cut = tmp_path / "cut.rf64"
    cut.write_bytes(data[:30000])
    _refused(cut, f"declares {RATE * 4} bytes of audio")


def test_w64_sizes_larger_than_the_file(tmp_path: Path) -> None:
    _, data = _written(tmp_path, "W64")
    at = data.find(W64_DATA)  # W64 chunk: 16-byte GUID, 64-bit size counting its 24-byte header
    assert at > 0
    riff = tmp_path / "riff.w64"
    riff.write_bytes(_patched(data, 16, "<Q", HUGE64))
    _refused(riff, f"W64 header declares a file of {HUGE64} bytes", f"only {len(data)} are present")
    audio = tmp_path / "data.w64"
    audio.write_bytes(_patched(data, at + 16, "<Q", HUGE64))
    _refused(audio, f"declares {HUGE64 - 24} bytes of audio", f"only {RATE * 4} are present")
    cut = tmp_path / "cut.w64"
    cut.write_bytes(data[:30000])
    _refused(cut, f"declares {RATE * 4} bytes of audio")


def test_sizes_libsndfile_cannot_seek_to_are_refused_before_it_tries(tmp_path: Path, capfd) -> None:
    """An RF64 data size past 2**63 made libsndfile seek there, and Python's seek error was printed
    as 'Exception ignored from cffi callback' with a traceback: the header is now checked first."""
    _, data = _written(tmp_path, "RF64")
    path = tmp_path / "beyond.rf64"
    path.write_bytes(_patched(data, 28, "<Q", (1 << 63) + 1600))
    capfd.readouterr()
    _refused_quietly = []
    for read in (load_audio, audio_info):
        with pytest.raises(AudioError, match=f"declares {(1 << 63) + 1600} bytes of audio") as error:
            read(path)
        _refused_quietly.append(str(error.value).startswith(f"{path}: truncated: "))
    err = capfd.readouterr().err
    assert all(_refused_quietly) and "Traceback" not in err and "Exception ignored" not in err, err
