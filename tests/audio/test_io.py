"""audiossl.audio.io: files, spans, resampling, bad audio, wav.scp pipes, torchcodec fallback, FSDD."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio.functional

from audiossl.audio.io import audio_info, load_audio
from audiossl.data.kaldi import DataDir, Segment
from audiossl.data.wav_scp import load_utterance, read_wav_scp_entry, read_wav_scp_info
from audiossl.errors import AudioError

FSDD = Path(__file__).resolve().parents[2] / "../shared/data/fsdd/recordings"


def _write(path: Path, samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def _noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(frames, channels)).astype(np.float32)
    return samples[:, 0] if channels == 1 else samples


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return _write(tmp_path / "a.wav", _noise(8000), subtype="FLOAT")


def test_load_wav_mono_float32(wav: Path) -> None:
    waveform, rate = load_audio(wav)
    assert rate == 16000 and waveform.dtype == torch.float32 and waveform.shape == (8000,)
    np.testing.assert_array_equal(waveform.numpy(), soundfile.read(wav, dtype="float32")[0])


def test_stereo_mixdown_is_channel_mean_and_mono_false_keeps_channels(tmp_path: Path) -> None:
    samples = _noise(4000, channels=2)
    path = _write(tmp_path / "stereo.flac", samples, subtype="PCM_24")
    reference = soundfile.read(path, dtype="float32")[0]  # (T, C)
    mono, _ = load_audio(path)
    both, _ = load_audio(path, mono=False)
    assert both.shape == (2, 4000)
    np.testing.assert_allclose(both.numpy(), reference.T)
    np.testing.assert_allclose(mono.numpy(), reference.mean(axis=1), atol=1e-7)


def test_span_equals_slice_of_full_file(wav: Path) -> None:
    full, _ = load_audio(wav)
    part, _ = load_audio(wav, start=0.1, end=0.35)
    torch.testing.assert_close(part, full[1600:5600])
    tail, _ = load_audio(wav, start=0.25, end=-1)
    torch.testing.assert_close(tail, full[4000:])


def test_resampling_matches_torchaudio(wav: Path) -> None:
    full, _ = load_audio(wav)
    resampled, rate = load_audio(wav, 8000)
    assert rate == 8000
    torch.testing.assert_close(resampled, torchaudio.functional.resample(full, 16000, 8000))
    same, rate = load_audio(wav, 16000)
    assert rate == 16000 and torch.equal(same, full)


def test_audio_info(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.wav", _noise(1234, channels=2), rate=8000)
    assert audio_info(path) == (1234, 8000, 2)


def test_segment_past_end_is_an_error_but_small_overshoot_is_clipped(wav: Path) -> None:
    with pytest.raises(AudioError, match="past the end") as error:
        load_audio(wav, start=0.1, end=2.0)
    assert str(wav) in str(error.value)
    clipped, _ = load_audio(wav, start=0.4, end=0.6)  # file is 0.5 s; Kaldi tolerates 0.5 s overshoot
    assert clipped.shape == (1600,)
    with pytest.raises(AudioError, match="past the end"):
        load_audio(wav, start=0.6)


# --- bad audio: every error names the file -------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not found") as error:
        load_audio(tmp_path / "nope.wav")
    assert str(tmp_path / "nope.wav") in str(error.value)


@pytest.mark.parametrize("content", [b"this is not audio at all" * 20, b"RIFF\x10\x00\x00\x00WAVEfmt "])
def test_corrupt_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="cannot read audio") as error:
        load_audio(path)
    assert str(path) in str(error.value)


def test_truncated_wav_is_detected_although_libsndfile_reads_it(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.wav", _noise(16000))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:20000])  # data chunk declares 32000 bytes
    assert soundfile.read(cut)[0].shape[0] < 16000  # the silent shortening we must catch
    for read in (load_audio, audio_info):
        with pytest.raises(AudioError, match="truncated") as error:
            read(cut)
        assert str(cut) in str(error.value)
    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut, start=0.0, end=0.1)  # even when the requested span is present


def test_truncated_flac(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.flac", _noise(32000))
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(AudioError) as error:
        load_audio(cut)
    assert str(cut) in str(error.value)


def test_zero_length(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="zero length") as error:
        load_audio(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_samples(tmp_path: Path, bad: float) -> None:
    samples = _noise(1000)
    samples[700] = bad
    path = _write(tmp_path / "nan.wav", samples, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN/Inf") as error:
        load_audio(path)
    assert str(path) in str(error.value) and "0.044 s" in str(error.value)


def test_unexpected_channel_count(tmp_path: Path) -> None:
    path = _write(tmp_path / "stereo.wav", _noise(100, channels=2))
    with pytest.raises(AudioError, match="2 channel") as error:
        load_audio(path, expected_channels=1)
    assert str(path) in str(error.value)
    assert load_audio(path, expected_channels=2)[0].shape == (100,)


# --- wav.scp entries and pipes --------------------------------------------------------------


def test_cat_pipe_equals_file(wav: Path) -> None:
    direct, _ = load_audio(wav)
    piped, rate = read_wav_scp_entry(f"cat {wav} |", allow_pipes=True)
    assert rate == 16000
    torch.testing.assert_close(piped, direct)
    span, _ = read_wav_scp_entry(f"cat {wav} |", allow_pipes=True, start=0.1, end=0.2)
    torch.testing.assert_close(span, direct[1600:3200])
    assert read_wav_scp_info(f"cat {wav} |", allow_pipes=True) == (8000, 16000, 1)


def test_python_pipe_writing_flac_to_stdout() -> None:
    script = (
        "import io, sys, numpy, soundfile; buffer = io.BytesIO(); "
        "soundfile.write(buffer, numpy.linspace(-0.5, 0.5, 800, dtype='float32'), 8000, format='FLAC'); "
        "sys.stdout.buffer.write(buffer.getvalue())"
    )
    waveform, rate = read_wav_scp_entry(f'{sys.executable} -c "{script}" |', allow_pipes=True, sample_rate=16000)
    expected = torchaudio.functional.resample(torch.linspace(-0.5, 0.5, 800), 8000, 16000)
    assert rate == 16000
    torch.testing.assert_close(waveform, expected, atol=1e-4, rtol=0)  # FLAC is 16-bit here


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_ffmpeg_pipe_stream_without_length(tmp_path: Path, fmt: str) -> None:
    """ffmpeg writing to stdout cannot seek back to fill in the length (WAV: 0xFFFFFFFF, FLAC: 0)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg binary is not installed")
    source = _write(tmp_path / "src.wav", _noise(8000))
    command = f"ffmpeg -hide_banner -loglevel error -i {source} -f {fmt} - |"
    piped, rate = read_wav_scp_entry(command, allow_pipes=True)
    assert rate == 16000
    torch.testing.assert_close(piped, load_audio(source)[0])
    torch.testing.assert_close(read_wav_scp_entry(command, allow_pipes=True, start=0.1, end=0.2)[0], piped[1600:3200])
    assert read_wav_scp_info(command, allow_pipes=True) == (8000, 16000, 1)


def test_failing_pipe_names_wav_scp_line_and_stderr(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as error:
        read_wav_scp_entry("echo 'no such corpus' >&2; exit 3 |", allow_pipes=True, source=(tmp_path / "wav.scp", 7))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'wav.scp'}:7: ") and "status 3" in message and "no such corpus" in message


def test_pipe_with_truncated_output(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.wav", _noise(16000))
    with pytest.raises(AudioError, match="truncated") as error:
        read_wav_scp_entry(f"head -c 20000 {full} |", allow_pipes=True, source=("data/wav.scp", 2))
    assert str(error.value).startswith("data/wav.scp:2: command 'head -c 20000")


def test_refused_pipe(wav: Path) -> None:
    with pytest.raises(AudioError, match="refused") as error:
        read_wav_scp_entry(f"cat {wav} |", allow_pipes=False, source=("data/wav.scp", 4))
    assert str(error.value).startswith("data/wav.scp:4: ")
    with pytest.raises(AudioError, match="refused"):
        read_wav_scp_info(f"cat {wav} |", allow_pipes=False)


def test_missing_file_from_wav_scp_names_line_and_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as error:
        read_wav_scp_entry(str(tmp_path / "gone.wav"), source=("data/wav.scp", 9))
    assert str(error.value) == f"data/wav.scp:9: {tmp_path / 'gone.wav'}: audio file not found"


def test_ark_offsets_are_refused_clearly() -> None:
    with pytest.raises(AudioError, match="archive offsets"):
        read_wav_scp_entry("/data/wav.ark:1234")


# --- segments -------------------------------------------------------------------------------


def test_segments_equal_slices_of_the_recording(tmp_path: Path) -> None:
    path = _write(tmp_path / "rec.wav", _noise(16000), subtype="FLOAT")
    data = DataDir(
        wav_scp={"rec": str(path)},
        segments={"u1": Segment("rec", 0.1, 0.3), "u2": Segment("rec", 0.5, -1), "u3": Segment("rec", 0.25, 0.75)},
        path=tmp_path,
    )
    full, _ = load_audio(path)
    torch.testing.assert_close(load_utterance(data, "u1")[0], full[1600:4800])
    torch.testing.assert_close(load_utterance(data, "u2")[0], full[8000:])
    torch.testing.assert_close(load_utterance(data, "u3")[0], full[4000:12000])
    torch.testing.assert_close(load_utterance(data, "u3", offset=0.1, duration=0.2)[0], full[5600:8800])
    resampled, rate = load_utterance(data, "u1", sample_rate=8000)
    assert rate == 8000 and resampled.shape == torchaudio.functional.resample(full[1600:4800], 16000, 8000).shape


def test_load_utterance_error_names_wav_scp_line(tmp_path: Path) -> None:
    (tmp_path / "wav.scp").write_text(f"a {tmp_path / 'a.wav'}\nb {tmp_path / 'missing.wav'}\n")
    _write(tmp_path / "a.wav", _noise(100))
    data = DataDir.load(tmp_path)
    with pytest.raises(AudioError) as error:
        load_utterance(data, "b")
    assert str(error.value).startswith(f"{tmp_path / 'wav.scp'}:2: {tmp_path / 'missing.wav'}")


# --- torchcodec fallback --------------------------------------------------------------------


def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg binary is not installed; it makes the MP3/MKV test files")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def test_torchcodec_lossless_container_equals_source(tmp_path: Path) -> None:
    source = _write(tmp_path / "src.wav", _noise(8000))
    _ffmpeg("-i", str(source), "-c:a", "pcm_s16le", str(tmp_path / "x.mkv"))
    decoded, rate = load_audio(tmp_path / "x.mkv")
    assert rate == 16000
    torch.testing.assert_close(decoded, load_audio(source)[0])
    part, _ = load_audio(tmp_path / "x.mkv", start=0.1, end=0.2)
    torch.testing.assert_close(part, decoded[1600:3200])
    assert audio_info(tmp_path / "x.mkv") == (8000, 16000, 1)


def test_torchcodec_mp3_matches_ffmpeg_decode(tmp_path: Path) -> None:
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    source = _write(tmp_path / "tone.wav", tone)
    _ffmpeg("-i", str(source), "-b:a", "64k", str(tmp_path / "tone.mp3"))
    _ffmpeg("-i", str(tmp_path / "tone.mp3"), "-c:a", "pcm_f32le", str(tmp_path / "ref.wav"))
    decoded, rate = load_audio(tmp_path / "tone.mp3", sample_rate=8000)
    reference = torchaudio.functional.resample(
        torch.from_numpy(soundfile.read(tmp_path / "ref.wav")[0]).float(), 16000, 8000
    )
    assert rate == 8000 and abs(decoded.shape[0] - reference.shape[0]) <= 1
    n = min(decoded.shape[0], reference.shape[0])
    torch.testing.assert_close(decoded[:n], reference[:n], atol=1e-3, rtol=0)


def test_missing_torchcodec_tells_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.mp3"
    path.write_bytes(b"\xff\xfb" * 100)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # makes the import fail
    with pytest.raises(AudioError, match=r"pip install 'audiossl\[codecs\]'") as error:
        load_audio(path)
    assert str(path) in str(error.value)


# --- real recordings ------------------------------------------------------------------------


def test_fsdd_recordings_resampled_to_16k() -> None:
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not found at {FSDD.resolve()} (folder `shared` beside the repo)")
    files = sorted(FSDD.glob("*.wav"))[:4]
    assert files, f"no wav files in {FSDD}"
    for path in files:
        native, native_rate = load_audio(path)
        assert native_rate == 8000
        waveform, rate = load_audio(path, 16000)
        assert rate == 16000 and waveform.dtype == torch.float32
        samples = soundfile.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)  # (T,)
        reference = torchaudio.functional.resample(torch.from_numpy(samples), 8000, 16000)
        torch.testing.assert_close(waveform, reference)
        assert waveform.shape[0] == 2 * native.shape[0]
