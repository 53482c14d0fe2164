"""Synthetic singing: melodies sung over the synthetic corpus's words, with the sung F0 as a reference.

``audiossl data synth --singing`` writes a Kaldi data dir like :mod:`audiossl.data.synth` does,
with the same lexicon and the same source-filter voice (:mod:`audiossl.data.voice`), but sung:

* every vowel carries one note of a melody; the melody walks a major pentatonic scale around the
  singer's tonic (steps of one or two scale degrees, leaps now and then), so songs stay in key;
* notes last one to four beats at the song's tempo, so some are held; the pitch glides between
  notes (portamento of ~40 ms) and held notes get vibrato (a delayed, faded-in sine of the
  singer's rate and depth, 5-6.5 Hz and 25-60 cents, the ranges reported for trained singers);
* every singer has a register: a tonic spread on a log scale over ``tonic_range_hz`` (an R2
  sequence, as synth spreads speakers), plus the vocal-tract scale and voice quality of a speaker.

Besides the usual tables the data dir gets ``utt2f0``: per utterance a ``f0/<utt>.npz`` file with
``f0`` (Hz, one value per ``1 / frame_rate`` s, 0 where nothing voiced is sung) and
``frame_rate`` -- the contour the generator sang (before the voice's small period jitter), so
pitch trackers and singing voice conversion can be scored against ground truth
(:func:`load_f0_track`). Utterances are pure functions of ``(seed, singer, index)`` and a
rerun keeps complete wavs, as in :mod:`audiossl.data.synth`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audiossl.data.kaldi import DataDir
from audiossl.data.synth import LEXICON, write_lexicon
from audiossl.data.voice import FRAME_RATE, PHONES, SILENCE, Span, Voice, num_samples, render
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.progress import progress

log = logging.getLogger(__name__)

#: Bump when the singing synthesis changes, so older corpora are regenerated.
GENERATOR_VERSION = 1

#: Scale degrees (semitones above the tonic) of the major pentatonic scale, over two octaves.
PENTATONIC = np.array([o * 12 + s for o in (-1, 0, 1) for s in (0, 2, 4, 7, 9)])

_SINGER_STREAM, _SONG_STREAM, _CORPUS_STREAM = 11, 12, 13
_R2_STEPS = (0.7548776662466927, 0.5698402909980532)
_STAMP = ".singing.json"
#: Consonant durations (s) in sung syllables: short, as singers shorten consonants and hold vowels.
_CONSONANT_SECONDS = {"nasal": 0.06, "liquid": 0.055, "fricative": 0.08, "stop": 0.08}


@dataclass(kw_only=True)
class SingingConfig:
    """What to sing; the same config always gives the same bytes."""

    singers: int = 4
    """Number of singers (ids sgr01, sgr02, ...)."""
    songs_per_singer: int = 12
    """Utterances per singer (ids sgr01-0001, ...)."""
    seed: int = 0
    """Seed of every random choice; a song depends only on it, its singer and its index."""
    sample_rate: int = 16000
    """Sample rate of the wav files (Hz), at least 8000."""
    words_per_song: tuple[int, int] = (2, 5)
    """Inclusive range of the number of lexicon words per utterance."""
    tonic_range_hz: tuple[float, float] = (110.0, 330.0)
    """Range of the singers' tonics (Hz), spread on a log scale: bass to soprano registers."""
    formant_scale_range: tuple[float, float] = (0.85, 1.2)
    """Range of the singers' vocal-tract scaling."""
    tempo_range_bpm: tuple[float, float] = (90.0, 150.0)
    """Range of song tempi (beats per minute); a note lasts 1 to 4 beats (of an eighth note each)."""
    vibrato_depth_cents: tuple[float, float] = (25.0, 60.0)
    """Range of the singers' vibrato depth (cents, peak deviation)."""
    vibrato_rate_hz: tuple[float, float] = (5.0, 6.5)
    """Range of the singers' vibrato rate (Hz)."""
    level_db: float = -24.0
    """RMS level (dBFS) of the sung parts."""
    noise_floor_db: float = -70.0
    """RMS level (dBFS) of the white noise floor."""

    def __post_init__(self) -> None:
        if self.singers < 1 or self.songs_per_singer < 1:
            raise ConfigError("singers and songs_per_singer must be at least 1")
        if self.sample_rate < 8000:
            raise ConfigError(f"sample_rate must be at least 8000 Hz, got {self.sample_rate}")
        if not 1 <= self.words_per_song[0] <= self.words_per_song[1]:
            raise ConfigError(f"words_per_song must be (min, max) with 1 <= min <= max, got {self.words_per_song}")
        for name in ("tonic_range_hz", "formant_scale_range", "tempo_range_bpm", "vibrato_rate_hz"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        # the top note (tonic + 1 octave + a sixth) plus vibrato must stay below a quarter of the rate
        if self.tonic_range_hz[1] * 2 ** (21 / 12) > self.sample_rate / 4:
            raise ConfigError(
                f"tonic_range_hz reaches {self.tonic_range_hz[1]} Hz: too high for {self.sample_rate} Hz audio"
            )


@dataclass(frozen=True)
class Singer:
    """A synthetic singer: voice, register and vibrato."""

    singer_id: str
    voice: Voice
    tonic_hz: float
    vibrato_depth_cents: float
    vibrato_rate_hz: float


@dataclass(frozen=True)
class SongPlan:
    """One sung utterance without its samples."""

    utt_id: str
    singer: Singer
    words: tuple[str, ...]
    spans: tuple[Span, ...]
    f0: np.ndarray
    """Sung F0 (Hz) at FRAME_RATE, continuous (also through consonants and silence)."""
    voiced: np.ndarray
    """Per frame: True where a voiced phone is sung (the utt2f0 track is ``f0 * voiced``)."""
    notes: tuple[tuple[float, float, float], ...]
    """(start s, end s, pitch Hz) of every note."""
    num_samples: int


def singer_profile(config: SingingConfig, index: int) -> Singer:
    """Singer ``index`` (0-based): tonic and tract scale from an R2 sequence, the rest random."""
    offset = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_CORPUS_STREAM,))).random(2)
    position = (offset + (index + 1) * np.asarray(_R2_STEPS)) % 1.0
    low, high = config.tonic_range_hz
    scale_low, scale_high = config.formant_scale_range
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_SINGER_STREAM, index)))
    tonic = float(low * (high / low) ** position[0])
    voice = Voice(
        f0_hz=tonic,
        formant_scale=float(scale_low + (scale_high - scale_low) * position[1]),
        open_quotient=float(rng.uniform(0.5, 0.65)),
        tilt=float(rng.uniform(0.35, 0.6)),
        breathiness=float(rng.uniform(0.01, 0.04)),
        jitter=0.002,  # trained voices are steady: ~3 cents period to period
        shimmer=float(rng.uniform(0.01, 0.03)),
    )
    width = max(2, len(str(config.singers)))
    return Singer(
        singer_id=f"sgr{index + 1:0{width}d}",
        voice=voice,
        tonic_hz=tonic,
        vibrato_depth_cents=float(rng.uniform(*config.vibrato_depth_cents)),
        vibrato_rate_hz=float(rng.uniform(*config.vibrato_rate_hz)),
    )


def song_id(config: SingingConfig, singer: int, index: int) -> str:
    """``sgr01-0001``: the singer id, then the 1-based song index."""
    return f"{singer_profile(config, singer).singer_id}-{index + 1:0{max(4, len(str(config.songs_per_singer)))}d}"


def _song_seed(config: SingingConfig, singer: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(config.seed, spawn_key=(_SONG_STREAM, singer, index))


def plan_song(config: SingingConfig, singer_index: int, index: int) -> SongPlan:
    """Words, a melody, phone timings and the sung F0 contour of one utterance (no audio)."""
    singer = singer_profile(config, singer_index)
    rng = np.random.default_rng(_song_seed(config, singer_index, index).spawn(2)[0])
    count = int(rng.integers(config.words_per_song[0], config.words_per_song[1], endpoint=True))
    words = [LEXICON[i] for i in rng.integers(len(LEXICON), size=count)]
    beat = 30.0 / float(rng.uniform(*config.tempo_range_bpm))  # an eighth note (s)
    degree = int(np.searchsorted(PENTATONIC, 0)) + int(rng.integers(-2, 3))  # start near the tonic
    spans: list[Span] = []
    notes: list[tuple[float, float, float]] = []
    time = float(rng.uniform(0.1, 0.2))
    spans.append(Span(SILENCE, 0.0, time))
    for position, word in enumerate(words):
        if position > 0 and rng.random() < 0.3:  # a breath between words
            spans.append(Span(SILENCE, time, time + beat))
            time += beat
        for symbol in word.phones:
            kind = PHONES[symbol].kind
            if kind != "vowel":
                duration = _CONSONANT_SECONDS[kind]
                spans.append(Span(symbol, time, time + duration))
                time += duration
                continue
            step = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree + step, 2, len(PENTATONIC) - 3))
            beats = int(rng.choice([1, 1, 2, 2, 3, 4]))
            duration = beats * beat
            pitch = singer.tonic_hz * 2.0 ** (PENTATONIC[degree] / 12.0)
            spans.append(Span(symbol, time, time + duration))
            notes.append((time, time + duration, float(pitch)))
            time += duration
    end = time + float(rng.uniform(0.15, 0.3))
    spans.append(Span(SILENCE, time, end))
    frames = np.arange(int(np.ceil(end * FRAME_RATE)) + 2) / FRAME_RATE  # (F,)
    f0 = _sung_contour(frames, notes, singer, rng)
    voiced = np.zeros(len(frames), dtype=bool)
    for span in spans:
        if span.phone != SILENCE and PHONES[span.phone].voicing > 0:
            voiced |= (frames >= span.start) & (frames < span.end)
    return SongPlan(
        utt_id=song_id(config, singer_index, index),
        singer=singer,
        words=tuple(w.spelling for w in words),
        spans=tuple(spans),
        f0=f0,
        voiced=voiced,
        notes=tuple(notes),
        num_samples=num_samples(spans, config.sample_rate),
    )


def _sung_contour(
    frames: np.ndarray, notes: list[tuple[float, float, float]], singer: Singer, rng: np.random.Generator
) -> np.ndarray:
    """F0 (Hz) at ``frames`` (s): note pitches joined by 40 ms glides, vibrato on held notes."""
    glide = 0.04
    cents = np.full(len(frames), 1200 * np.log2(notes[0][2]))
    for (start, _, pitch), previous in zip(notes, [None, *notes[:-1]], strict=True):
        target = 1200 * np.log2(pitch)
        if previous is None:
            continue
        before = 1200 * np.log2(previous[2])
        # raised-cosine glide centred on the note onset; before it the previous note holds
        phase = np.clip((frames - (start - glide / 2)) / glide, 0.0, 1.0)
        glided = before + (target - before) * 0.5 * (1 - np.cos(np.pi * phase))
        cents = np.where(frames >= start - glide / 2, glided, cents)
    for start, end, _ in notes:
        held = end - start
        if held < 0.3:
            continue
        onset = start + 0.15  # vibrato starts after the attack and fades in over 0.2 s
        inside = (frames >= onset) & (frames < end)
        fade = np.clip((frames - onset) / 0.2, 0.0, 1.0)
        phase0 = float(rng.uniform(0, 2 * np.pi))
        cycle = 2 * np.pi * singer.vibrato_rate_hz * (frames - onset) + phase0
        wobble = singer.vibrato_depth_cents * fade * np.sin(cycle)
        cents = np.where(inside, cents + wobble, cents)
    return 2.0 ** (cents / 1200.0)


def render_song(config: SingingConfig, singer: int, index: int) -> tuple[SongPlan, np.ndarray]:
    """The plan and the 16-bit samples (int16, (num_samples,)) of one sung utterance."""
    plan = plan_song(config, singer, index)
    rng = np.random.default_rng(_song_seed(config, singer, index).spawn(2)[1])
    audio = render(plan.spans, plan.singer.voice, plan.f0, config.sample_rate, rng)
    sung = np.zeros(len(audio), dtype=bool)
    for span in plan.spans:
        if span.phone != SILENCE:
            sung[int(span.start * config.sample_rate) : int(span.end * config.sample_rate)] = True
    rms = float(np.sqrt(np.mean(audio[sung] ** 2)))
    audio = audio * (10.0 ** (config.level_db / 20.0) / max(rms, 1e-12))
    audio = audio + rng.standard_normal(len(audio)) * 10.0 ** (config.noise_floor_db / 20.0)
    peak = float(np.max(np.abs(audio)))
    if peak > 0.95:
        audio *= 0.95 / peak
    return plan, np.round(audio * 32767.0).astype(np.int16)


def reference_f0(plan: SongPlan) -> np.ndarray:
    """The utt2f0 track of a plan: sung F0 (Hz) at FRAME_RATE, 0 where nothing voiced is sung."""
    return np.where(plan.voiced, plan.f0, 0.0).astype(np.float32)


def synthesize_singing(out_dir: str | Path, config: SingingConfig) -> DataDir:
    """Write the singing corpus as a Kaldi data dir (wav/, f0/, wav.scp, utt2spk, text, utt2f0, ...)."""
    out_dir = Path(out_dir)
    wav_dir, f0_dir = out_dir / "wav", out_dir / "f0"
    wav_dir.mkdir(parents=True, exist_ok=True)
    f0_dir.mkdir(parents=True, exist_ok=True)
    _forget_stale(wav_dir, config)
    data = DataDir(text={}, utt2dur={}, utt2num_samples={}, labels={"f0": {}})
    generated = 0
    jobs = [(s, u) for s in range(config.singers) for u in range(config.songs_per_singer)]
    for singer, index in progress(jobs, desc="sing", total=len(jobs), unit="utt"):
        plan = plan_song(config, singer, index)
        path = (wav_dir / f"{plan.utt_id}.wav").resolve()
        track = (f0_dir / f"{plan.utt_id}.npz").resolve()
        if not _complete(path, plan.num_samples, config.sample_rate) or not track.is_file():
            _, samples = render_song(config, singer, index)
            with atomic_path(path) as tmp:
                sf.write(tmp, samples, config.sample_rate, subtype="PCM_16", format="WAV")
            with atomic_path(track) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, f0=reference_f0(plan), frame_rate=np.float64(FRAME_RATE))
            generated += 1
        data.wav_scp[plan.utt_id] = str(path)
        data.utt2spk[plan.utt_id] = plan.singer.singer_id
        data.text[plan.utt_id] = " ".join(plan.words)
        data.utt2dur[plan.utt_id] = plan.num_samples / config.sample_rate
        data.utt2num_samples[plan.utt_id] = plan.num_samples
        data.labels["f0"][plan.utt_id] = str(track)
    log.info("sing: generated %d wavs, kept %d complete ones", generated, len(jobs) - generated)
    data.save(out_dir)
    write_lexicon(out_dir / "lexicon.txt")
    return data


def load_f0_track(data: DataDir, utt: str) -> tuple[np.ndarray, float] | None:
    """The reference F0 (Hz, 0 = unvoiced) and its frame rate of ``utt`` from utt2f0; None without one."""
    table = data.labels.get("f0")
    if table is None or utt not in table:
        return None
    where = Path(table[utt])
    if not where.is_absolute() and data.path is not None:
        where = data.path / where
    try:
        with np.load(where) as stored:
            f0, rate = np.asarray(stored["f0"], dtype=np.float64), float(stored["frame_rate"])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"utterance {utt!r}: unreadable F0 track {where} ({error})", _table_path(data)) from None
    if f0.ndim != 1 or rate <= 0 or not np.all(np.isfinite(f0)) or np.any(f0 < 0):
        message = f"utterance {utt!r}: {where} is not a 1-D track of F0 >= 0 with a positive rate"
        raise DataError(message, _table_path(data))
    return f0, rate


def _table_path(data: DataDir) -> Path | None:
    return None if data.path is None else data.path / "utt2f0"


def describe_singing(config: SingingConfig | None = None) -> str:
    """Singers, registers and vibrato of a config, as text."""
    config = config or SingingConfig()
    lines = [f"synthetic singing: {config.singers} singers x {config.songs_per_singer} songs, {config.sample_rate} Hz"]
    for index in range(config.singers):
        s = singer_profile(config, index)
        lines.append(
            f"  {s.singer_id}: tonic {s.tonic_hz:6.1f} Hz  tract x{s.voice.formant_scale:.3f}  "
            f"vibrato {s.vibrato_rate_hz:.1f} Hz +-{s.vibrato_depth_cents:.0f} cents"
        )
    return "\n".join(lines)


def _complete(path: Path, expected: int, sample_rate: int) -> bool:
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError):
        return False
    return info.frames == expected and info.samplerate == sample_rate and info.channels == 1


def _forget_stale(wav_dir: Path, config: SingingConfig) -> None:
    """Delete songs made with other settings (the stamp records every setting that shapes a song)."""
    settings = dataclasses.asdict(config)
    del settings["singers"], settings["songs_per_singer"]
    settings = json.loads(json.dumps({"version": GENERATOR_VERSION, **settings}))
    stamp = wav_dir / _STAMP
    try:
        if json.loads(stamp.read_text()) == settings:
            return
    except (OSError, ValueError):
        pass
    for path in wav_dir.iterdir():
        if re.fullmatch(r"sgr\d+-\d+\.wav", path.name):
            path.unlink()
    with atomic_write(stamp) as handle:
        json.dump(settings, handle, indent=1, sort_keys=True)
