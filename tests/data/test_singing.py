"""The synthetic singing corpus: melodies in key, held notes with vibrato, and utt2f0 that matches the audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir
from audiossl.data.singing import PENTATONIC, SingingConfig, load_f0_track, plan_song, render_song, singer_profile
from audiossl.data.voice import FRAME_RATE
from audiossl.errors import ConfigError, DataError

CONFIG = SingingConfig(singers=3, songs_per_singer=2, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("sing") / "data"
    assert main(["data", "synth", str(out), "--singing", "--speakers", "2", "--utts-per-speaker", "2"]) == 0
    return out


def test_cli_writes_a_data_dir_with_f0_tracks(corpus):
    data = DataDir.load(corpus)
    assert sorted(data.utt2spk) == ["sgr01-0001", "sgr01-0002", "sgr02-0001", "sgr02-0002"]
    assert set(data.labels["f0"]) == set(data.wav_scp) and set(data.text) == set(data.wav_scp)
    f0, rate = load_f0_track(data, "sgr02-0001")
    assert rate == FRAME_RATE
    assert len(f0) / rate == pytest.approx(soundfile.info(data.wav_scp["sgr02-0001"]).duration, abs=0.02)
    assert (f0 > 0).any() and (f0 == 0).any()  # sung and silent frames


def test_rerun_keeps_the_wavs_and_the_same_bytes(corpus):
    before = {p.name: p.read_bytes() for p in (corpus / "wav").glob("*.wav")}
    mtimes = {p.name: p.stat().st_mtime_ns for p in (corpus / "wav").glob("*.wav")}
    assert main(["data", "synth", str(corpus), "--singing", "--speakers", "2", "--utts-per-speaker", "2"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (corpus / "wav").glob("*.wav")} == mtimes
    _, samples = render_song(SingingConfig(singers=2, songs_per_singer=2), 1, 0)
    assert soundfile.read(corpus / "wav" / "sgr02-0001.wav", dtype="int16")[0].tobytes() == samples.tobytes()
    assert before == {p.name: p.read_bytes() for p in (corpus / "wav").glob("*.wav")}


def test_notes_are_in_the_singers_key_and_registers_differ():
    tonics = [singer_profile(CONFIG, i).tonic_hz for i in range(3)]
    assert len(set(np.round(tonics, 1))) == 3
    for singer in range(3):
        plan = plan_song(CONFIG, singer, 1)
        semitones = 12 * np.log2([pitch / plan.singer.tonic_hz for _, _, pitch in plan.notes])
        assert np.allclose(semitones, np.round(semitones), atol=1e-9)  # equal temperament
        assert set(np.round(semitones).astype(int)) <= set(PENTATONIC.tolist())


def test_held_notes_carry_vibrato_of_the_singers_depth():
    plan = next(p for p in (plan_song(CONFIG, 0, i) for i in range(6)) if any(e - s >= 0.6 for s, e, _ in p.notes))
    start, end, pitch = next(n for n in plan.notes if n[1] - n[0] >= 0.6)
    frames = np.arange(len(plan.f0)) / FRAME_RATE
    steady = (frames >= start + 0.4) & (frames < end - 0.05)  # after the vibrato's fade-in
    cents = 1200 * np.log2(plan.f0[steady] / pitch)
    depth = plan.singer.vibrato_depth_cents
    assert cents.max() > 0.7 * depth and cents.min() < -0.7 * depth and np.abs(cents).max() <= depth + 1e-6


def test_utt2f0_matches_the_sung_audio():
    import librosa

    plan, samples = render_song(CONFIG, 2, 0)
    reference = np.where(plan.voiced, plan.f0, 0.0)[::2]  # every other 5 ms frame: half the pYIN work
    hop = 2 * CONFIG.sample_rate // FRAME_RATE  # pYIN frame j is centred on sample j x hop = reference frame 2j
    f0, voiced, _ = librosa.pyin(
        samples.astype(np.float64) / 32768, fmin=60, fmax=1000, sr=CONFIG.sample_rate, frame_length=1024,
        hop_length=hop, center=True,
    )  # fmt: skip
    frames = min(len(f0), len(reference))
    f0, voiced, reference = f0[:frames], voiced[:frames], reference[:frames]
    both = voiced & (reference > 0)
    cents = 1200 * np.log2(f0[both] / reference[both])
    assert both.sum() > 0.5 * (reference > 0).sum()
    assert np.median(np.abs(cents)) < 15 and np.mean(np.abs(cents) < 50) > 0.9
    assert np.mean(voiced == (reference > 0)) > 0.8  # voicing decisions mostly agree


def test_bad_settings_and_bad_tracks_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="too high"):
        SingingConfig(sample_rate=8000, tonic_range_hz=(110.0, 600.0))
    with pytest.raises(ConfigError, match="songs_per_singer"):
        SingingConfig(songs_per_singer=0)
    (tmp_path / "f0.npz").write_bytes(b"not an npz")
    data = DataDir(labels={"f0": {"u1": "f0.npz"}}, path=tmp_path)
    with pytest.raises(DataError, match="unreadable F0 track") as info:
        load_f0_track(data, "u1")
    assert "utt2f0" in str(info.value)
    assert load_f0_track(data, "u2") is None
