"""The embedded synthetic corpus: determinism, independence, resume, tables, and acoustics.

Acoustic claims (speaker F0, tract scaling, emotion prosody) are checked with estimators
written here (autocorrelation F0, LPC formants via librosa), not with the generator's code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from audiossl.cli.main import main
from audiossl.data.kaldi import DataDir, kaldi_sort_key, read_entries
from audiossl.data.synth import (
    EMOTION_PROSODY,
    LEXICON,
    SynthConfig,
    describe_corpus,
    plan_utterance,
    render_utterance,
    speaker_profile,
    synthesize_corpus,
)
from audiossl.data.voice import FRAME_RATE, PHONES, SILENCE, Span, Voice, render
from audiossl.errors import ConfigError

SMALL = SynthConfig(speakers=4, utts_per_speaker=4, seed=3)
TABLES = ("wav.scp", "utt2spk", "spk2utt", "text", "utt2emo", "utt2dur", "utt2num_samples")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataDir]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_corpus(out, SMALL)
    return out, DataDir.load(out)


def _files(out: Path) -> dict[str, bytes]:
    """Every wav and table of a corpus dir; wav.scp reduced to file names (paths differ per dir)."""
    files = {p.name: p.read_bytes() for p in sorted((out / "wav").glob("*.wav"))}
    for table in TABLES:
        files[table] = (out / table).read_bytes()
    files["wav.scp"] = "\n".join(f"{e.key} {Path(e.value).name}" for e in read_entries(out / "wav.scp")).encode()
    return files


def _read(data: DataDir, utt: str) -> tuple[np.ndarray, int]:
    return sf.read(data.wav_scp[utt], dtype="float64")


def estimate_f0(x: np.ndarray, sample_rate: int, fmin: float = 60.0, fmax: float = 500.0) -> float:
    """Median F0 (Hz) of clearly periodic 40 ms frames, by normalised autocorrelation."""
    size, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop]  # (T, size)
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).sum(axis=1)
    lags = np.arange(int(sample_rate / fmax), int(sample_rate / fmin) + 1)
    power = np.abs(np.fft.rfft(frames, 2 * size, axis=1)) ** 2
    acf = np.fft.irfft(power, axis=1)  # (T, 2 * size)
    normalised = acf[:, lags] / np.maximum(acf[:, :1], 1e-12)  # (T, L)
    best = normalised.argmax(axis=1)
    periodic = (normalised[np.arange(len(best)), best] > 0.7) & (energy > energy.max() * 1e-3)
    assert periodic.sum() >= 5, "too few periodic frames to estimate F0"
    return float(np.median(sample_rate / lags[best[periodic]]))


def active_rms_db(x: np.ndarray, sample_rate: int) -> float:
    """RMS level (dB) of the 20 ms frames within 30 dB of the loudest frame."""
    size = int(0.02 * sample_rate)
    frames = x[: len(x) // size * size].reshape(-1, size)  # (T, size)
    power = (frames**2).mean(axis=1)
    return float(10 * np.log10(power[power > power.max() * 1e-3].mean()))


def lpc_formants(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Formant frequencies (Hz, ascending) from the roots of an LPC fit."""
    x = np.append(x[0], x[1:] - 0.97 * x[:-1]) * np.hamming(len(x))
    roots = np.roots(librosa.lpc(x, order=2 + sample_rate // 1000))
    roots = roots[roots.imag > 0]
    freqs = np.angle(roots) * sample_rate / (2 * np.pi)
    bandwidths = -np.log(np.abs(roots)) * sample_rate / np.pi
    return np.sort(freqs[(bandwidths < 400) & (freqs > 150)])


def test_same_seed_same_bytes_and_other_seed_differs(corpus, tmp_path):
    out, _ = corpus
    synthesize_corpus(tmp_path / "again", SMALL)
    assert _files(tmp_path / "again") == _files(out)
    other = SynthConfig(speakers=2, utts_per_speaker=2, seed=SMALL.seed + 1)
    synthesize_corpus(tmp_path / "other", other)
    for name in ("spk01-0001.wav", "spk02-0002.wav"):
        assert (tmp_path / "other" / "wav" / name).read_bytes() != (out / "wav" / name).read_bytes()


def test_utterances_do_not_depend_on_corpus_size(tmp_path):
    small = synthesize_corpus(tmp_path / "three", SynthConfig(speakers=2, utts_per_speaker=3, seed=5))
    large = synthesize_corpus(tmp_path / "five", SynthConfig(speakers=3, utts_per_speaker=5, seed=5))
    assert len(large.wav_scp) == 15
    for utt in small.wav_scp:
        assert Path(small.wav_scp[utt]).read_bytes() == Path(large.wav_scp[utt]).read_bytes(), utt
        assert small.text[utt] == large.text[utt]
        assert small.labels["emo"][utt] == large.labels["emo"][utt]


def test_tables_are_consistent_and_kaldi_sorted(corpus):
    out, data = corpus
    utts = data.utterance_ids
    assert len(utts) == SMALL.speakers * SMALL.utts_per_speaker
    for table in TABLES:
        keys = [entry.key for entry in read_entries(out / table)]
        assert keys == sorted(keys, key=kaldi_sort_key), table
        if table != "spk2utt":
            assert keys == utts, table
    spk2utt = {e.key: e.value.split() for e in read_entries(out / "spk2utt")}
    assert sorted(u for us in spk2utt.values() for u in us) == sorted(utts)
    for speaker, speaker_utts in spk2utt.items():
        for utt in speaker_utts:
            assert data.utt2spk[utt] == speaker and utt.startswith(speaker + "-")
    assert sorted(spk2utt) == [f"spk0{i}" for i in range(1, 5)]
    for path in data.wav_scp.values():
        assert Path(path).is_absolute() and Path(path).is_file()


def test_text_uses_lexicon_words(corpus):
    _, data = corpus
    spellings = {word.spelling for word in LEXICON}
    low, high = SMALL.words_per_utt
    for utt, text in data.text.items():
        words = text.split(" ")
        assert low <= len(words) <= high, utt
        assert set(words) <= spellings and text == text.lower()
    out_dir, _ = corpus
    entries = [line.split() for line in (out_dir / "lexicon.txt").read_text().splitlines()]
    assert {entry[0] for entry in entries} == spellings
    assert {entry[0]: tuple(entry[1:]) for entry in entries} == {w.spelling: w.phones for w in LEXICON}


def test_emotions_are_balanced_per_speaker():
    config = SynthConfig(speakers=3, utts_per_speaker=10)
    for speaker in range(3):
        emotions = [plan_utterance(config, speaker, i).emotion for i in range(10)]
        counts = [emotions.count(e) for e in config.emotions]
        assert max(counts) - min(counts) <= 1 and sum(counts) == 10


def test_audio_is_valid_and_matches_utt2dur(corpus):
    _, data = corpus
    for utt in data.utterance_ids:
        info = sf.info(data.wav_scp[utt])
        assert (info.samplerate, info.channels, info.subtype) == (SMALL.sample_rate, 1, "PCM_16")
        x, _ = _read(data, utt)
        assert np.isfinite(x).all() and np.abs(x).max() < 0.97
        assert len(x) == data.utt2num_samples[utt]
        assert abs(len(x) / SMALL.sample_rate - data.utt2dur[utt]) < 1e-4
        assert 0.4 < data.utt2dur[utt] < 4.0
        assert np.std(x[:400]) > 0  # a noise floor, never digital silence


def test_speakers_differ_in_f0_as_configured(corpus):
    _, data = corpus
    configured, estimated = [], []
    for index in range(SMALL.speakers):
        profile = speaker_profile(SMALL, index)
        neutral = [u for u in data.spk2utt[profile.speaker_id].split() if data.labels["emo"][u] == "neutral"]
        f0 = estimate_f0(*_read(data, neutral[0]))
        # A neutral utterance sits at the speaker's F0 raised a little by its pitch accents.
        assert 0.9 < f0 / profile.voice.f0_hz < 1.25, (profile.speaker_id, f0, profile.voice.f0_hz)
        configured.append(profile.voice.f0_hz)
        estimated.append(f0)
    for i in range(len(configured)):
        for j in range(len(configured)):
            if configured[i] > 1.15 * configured[j]:
                assert estimated[i] > estimated[j]


def test_speaker_f0_and_tract_are_spread_over_the_configured_ranges():
    config = SynthConfig(speakers=8)
    voices = [speaker_profile(config, i).voice for i in range(8)]
    f0s = np.array([v.f0_hz for v in voices])
    scales = np.array([v.formant_scale for v in voices])
    assert f0s.min() >= 90 and f0s.max() <= 240 and f0s.max() / f0s.min() > 1.8
    assert scales.min() >= 0.85 and scales.max() <= 1.2 and scales.max() - scales.min() > 0.2
    pairs = {(round(f, 1), round(s, 3)) for f, s in zip(f0s, scales, strict=True)}
    assert len(pairs) == 8


@pytest.mark.parametrize("vowel", ["a", "i"])
def test_formants_follow_the_speaker_tract_scale(vowel):
    sample_rate = 16000
    spans = [Span(SILENCE, 0.0, 0.05), Span(vowel, 0.05, 0.55), Span(SILENCE, 0.55, 0.6)]
    f0 = np.full(int(0.6 * FRAME_RATE) + 2, 100.0)
    for scale in (0.85, 1.2):
        voice = Voice(f0_hz=100.0, formant_scale=scale, jitter=0.0, shimmer=0.0, breathiness=0.0)
        x = render(spans, voice, f0, sample_rate, np.random.default_rng(0))
        found = lpc_formants(x[int(0.2 * sample_rate) : int(0.4 * sample_rate)], sample_rate)
        for target in PHONES[vowel].formants:
            nearest = found[np.argmin(np.abs(found - target * scale))]
            assert abs(nearest / (target * scale) - 1) < 0.06, (vowel, scale, target, found)


def test_emotion_prosody_moves_f0_and_energy(corpus):
    _, data = corpus
    assert EMOTION_PROSODY["happy"].f0_scale > 1 > EMOTION_PROSODY["sad"].f0_scale
    for speaker in data.spk2utt:
        by_emotion = {data.labels["emo"][u]: u for u in data.spk2utt[speaker].split()}
        f0 = {e: estimate_f0(*_read(data, u)) for e, u in by_emotion.items()}
        level = {e: active_rms_db(*_read(data, u)) for e, u in by_emotion.items()}
        assert f0["happy"] > f0["neutral"] > f0["sad"], (speaker, f0)
        assert level["angry"] > level["neutral"] + 3 > level["sad"] + 6, (speaker, level)


def test_sad_speech_is_slower_and_angry_faster():
    config = SynthConfig(speakers=8, utts_per_speaker=8)
    per_phone: dict[str, list[float]] = {e: [] for e in config.emotions}
    for speaker in range(config.speakers):
        for index in range(config.utts_per_speaker):
            plan = plan_utterance(config, speaker, index)
            spoken = [s for s in plan.spans if s.phone != SILENCE]
            per_phone[plan.emotion].append((spoken[-1].end - spoken[0].start) / len(spoken))
    mean = {e: np.mean(v) for e, v in per_phone.items()}
    assert mean["sad"] > mean["neutral"] > mean["angry"]


def test_resume_regenerates_only_missing_or_truncated_wavs(tmp_path):
    config = SynthConfig(speakers=2, utts_per_speaker=3, seed=1)
    out = tmp_path / "corpus"
    synthesize_corpus(out, config)
    wavs = sorted((out / "wav").glob("*.wav"))
    original = {p.name: p.read_bytes() for p in wavs}
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in wavs}
    (out / "wav" / "spk01-0002.wav").unlink()
    truncated = out / "wav" / "spk02-0003.wav"
    truncated.write_bytes(truncated.read_bytes()[:-200])
    synthesize_corpus(out, config)
    after = {p.name: p.stat() for p in sorted((out / "wav").glob("*.wav"))}
    rewritten = {n for n, st in after.items() if (st.st_ino, st.st_mtime_ns) != before[n]}
    assert rewritten == {"spk01-0002.wav", "spk02-0003.wav"}
    assert {p.name: p.read_bytes() for p in sorted((out / "wav").glob("*.wav"))} == original


def test_other_settings_regenerate_everything(tmp_path):
    out = tmp_path / "corpus"
    synthesize_corpus(out, SynthConfig(speakers=1, utts_per_speaker=2, seed=1))
    synthesize_corpus(out, SynthConfig(speakers=1, utts_per_speaker=2, seed=2))
    synthesize_corpus(tmp_path / "fresh", SynthConfig(speakers=1, utts_per_speaker=2, seed=2))
    assert _files(out) == _files(tmp_path / "fresh")


def test_low_sample_rate_keeps_formants_below_nyquist():
    config = SynthConfig(speakers=8, utts_per_speaker=1, sample_rate=8000)
    plan, samples = render_utterance(config, 7, 0)  # a small-tract speaker: formants pushed up
    assert len(samples) == plan.num_samples and samples.dtype == np.int16
    x = samples / 32768.0
    assert np.isfinite(x).all() and 0 < np.abs(x).max() < 0.97


@pytest.mark.parametrize(
    "overrides",
    [{"emotions": ("neutral", "bored")}, {"emotions": ()}, {"words_per_utt": (3, 2)}, {"speakers": 0}],
)
def test_bad_config_is_a_config_error(overrides):
    with pytest.raises(ConfigError):
        SynthConfig(**overrides)


def test_describe_corpus_lists_speakers_and_words():
    text = describe_corpus(SynthConfig(speakers=3))
    assert "spk03" in text and "spk04" not in text
    assert all(word.spelling in text for word in LEXICON)


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synth", str(out), "--speakers", "2", "--utts-per-speaker", "2"]) == 0
    data = DataDir.load(out)
    assert data.utterance_ids == ["spk01-0001", "spk01-0002", "spk02-0001", "spk02-0002"]
    assert "4 utterances from 2 speakers" in capsys.readouterr().out
    shutil.rmtree(out)
