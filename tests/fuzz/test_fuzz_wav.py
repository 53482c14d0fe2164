"""Fuzzing the WAV reader (header checks of audiossl.audio.io): audio loads or raises AudioError, nothing else.

Inputs are random bytes, and valid WAV/RF64/WAVE64 files (PCM and float, 1 or 2 channels) with
mutations aimed at the header: a size field set to 0, small, huge or 0xFFFFFFFF, chunk ids
swapped, format fields (channels, rate, bits) overwritten, bytes flipped, the file cut anywhere,
or junk appended. Each is read as a file (``load_audio`` and ``audio_info``) and as a stream.
"""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from audiossl.audio.io import audio_info, load_audio
from audiossl.errors import AudioError

# A Python exception inside a libsndfile callback is printed as "Exception ignored ... Traceback":
# for the user that is a traceback, so here it fails the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def _valid(format: str, subtype: str, channels: int) -> bytes:
    buffer = io.BytesIO()
    samples = (np.random.default_rng(0).standard_normal((800, channels)) * 0.1).astype(np.float32)
    soundfile.write(buffer, samples, 16000, format=format, subtype=subtype)
    return buffer.getvalue()


SEEDS = [
    _valid(fmt, subtype, channels)
    for fmt in ("WAV", "RF64", "W64")
    for subtype in ("PCM_16", "FLOAT")
    for channels in (1, 2)
]
SIZES = st.sampled_from([0, 1, 7, 44, 1600, 0x7FFEFFFF, 0x7FFF0000, 0x7FFFFFF0, 0xFFFFFFFE, 0xFFFFFFFF])
CHUNK_IDS = st.sampled_from([b"RIFF", b"RF64", b"WAVE", b"fmt ", b"data", b"ds64", b"LIST", b"\x00\x00\x00\x00"])


@st.composite
def mutated_wav(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 5))
        if len(data) < 8:
            break
        at = draw(st.integers(0, min(len(data), 120) - 4))
        if kind == 0:  # a size field (most are at 4-byte offsets in the first 100 bytes)
            struct.pack_into("<I", data, at, draw(SIZES))
        elif kind == 1:
            data[at : at + 4] = draw(CHUNK_IDS)
        elif kind == 2:  # format fields: channels, rate, bits
            struct.pack_into("<H", data, at, draw(st.sampled_from([0, 1, 2, 3, 8, 0xFFFF])))
        elif kind == 3:
            data[at] = draw(st.integers(0, 255))
        elif kind == 4:
            del data[draw(st.integers(0, len(data))) :]
        else:
            data += draw(st.binary(max_size=64))
    return bytes(data)


INPUTS = st.one_of(mutated_wav(), mutated_wav(), mutated_wav(), st.binary(max_size=200))
_ROOT = Path(tempfile.mkdtemp(prefix="audiossl-fuzz-wav-"))


def _check(read, *args, **kwargs) -> None:
    try:
        result = read(*args, **kwargs)
    except AudioError:
        return
    if isinstance(result[0], int):  # audio_info: (samples, rate, channels)
        samples, rate, channels = result
        assert samples >= 0 and rate > 0 and channels > 0
    else:
        waveform, rate = result
        assert waveform.numel() > 0 and rate > 0


@fuzz_settings(2000)
@given(data=INPUTS, suffix=st.sampled_from([".wav", ".rf64", ".w64"]))
def test_a_wav_file_loads_or_raises_audio_error(data, suffix):
    path = Path(tempfile.mkdtemp(dir=_ROOT)) / f"x{suffix}"
    path.write_bytes(data)
    _check(audio_info, path)
    _check(load_audio, path)
    _check(load_audio, path, start=0.01, end=0.03)


@fuzz_settings(2000)
@given(data=INPUTS)
def test_a_wav_stream_loads_or_raises_audio_error(data):
    _check(audio_info, data, name="stream")
    _check(load_audio, data, name="stream")
