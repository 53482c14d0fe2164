"""The embedded synthetic corpus: speech-like audio with text, speaker and emotion labels.

The corpus lets every part of audiossl (pretraining, ASR, speaker verification, emotion
recognition, voice conversion) run end to end without downloading anything. Audio comes
from the source-filter voice in :mod:`audiossl.data.voice`; see :func:`describe_corpus`.

Each utterance is a pure function of ``(seed, speaker index, utterance index)``: its random
stream is derived with ``numpy.random.SeedSequence`` from those three numbers alone, so an
utterance never depends on how many others were generated, generation can be split across
processes, and an interrupted run resumes by skipping the wavs that are already complete.
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

from audiossl.data.kaldi import DataDir, kaldi_sort_key, write_table
from audiossl.data.translation import write_synthetic_translations
from audiossl.data.voice import FRAME_RATE, PHONES, SILENCE, Span, Voice, num_samples, render
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.progress import progress

log = logging.getLogger(__name__)

#: Bump when the synthesis changes, so corpora made by an older version are regenerated.
GENERATOR_VERSION = 1

# SeedSequence spawn keys that keep the corpus-, speaker- and utterance-level streams apart.
_CORPUS_STREAM, _SPEAKER_STREAM, _UTTERANCE_STREAM = 0, 1, 2
# Additive recurrence steps of the R2 low-discrepancy sequence (1/g and 1/g^2, g the plastic
# number): any prefix of speakers covers the (F0, tract length) plane evenly.
_R2_STEPS = (0.7548776662466927, 0.5698402909980532)
_STAMP = ".synth.json"


@dataclass(frozen=True)
class Word:
    """A lexicon entry: a readable spelling, its phones and which phone carries the stress."""

    spelling: str
    phones: tuple[str, ...]
    stress: int


def _lexicon(spec: str) -> tuple[Word, ...]:
    words = []
    for line in spec.strip().splitlines():
        spelling, *phones = line.split()
        stress = next(i for i, p in enumerate(phones) if p.endswith("'"))
        words.append(Word(spelling, tuple(p.rstrip("'") for p in phones), stress))
    return tuple(words)


#: Sixteen words over the 16-phone inventory; ``'`` marks the stressed (accented) phone.
LEXICON: tuple[Word, ...] = _lexicon(
    """
    sun     s a' n
    moon    m u' n
    tea     t i'
    key     k i'
    lemon   l e' m o n
    rose    r o' s
    wolf    w u' l f
    fish    f i' sh
    snow    s n o'
    kite    k a' i t
    rain    r e' n
    lime    l a' i m
    seal    s i' l
    wine    w a' i n
    ship    sh i' p
    tomato  t o m a' t o
    """
)


#: Semantic group of every lexicon word: the intent of an utterance is built from them
#: (:func:`intent_of`), as Fluent Speech Commands' intents are built from action and object slots.
WORD_GROUPS: dict[str, str] = {
    **dict.fromkeys(("sun", "moon", "snow", "rain", "rose"), "nature"),
    **dict.fromkeys(("tea", "lemon", "lime", "tomato", "wine"), "food"),
    **dict.fromkeys(("wolf", "fish", "seal"), "animal"),
    **dict.fromkeys(("key", "kite", "ship"), "thing"),
}
#: The "action" slot an utterance's first word selects, by the word's group.
GROUP_ACTIONS: dict[str, str] = {"nature": "show", "food": "bring", "animal": "find", "thing": "move"}


def intent_of(words: tuple[str, ...] | list[str]) -> str:
    """``<action>_<object>``: the action its first word's group selects, the object its last word's group.

    Fluent Speech Commands labels an intent by slots (action, object, location) that the words
    determine; here the slots are read off the words the same way, so intent classification
    needs the words' identities (and their order), not just their presence. 4 x 4 = 16 intents.
    """
    if not words:
        raise ValueError("an utterance without words has no intent")
    return f"{GROUP_ACTIONS[WORD_GROUPS[words[0]]]}_{WORD_GROUPS[words[-1]]}"


def word_alignment(plan: UtterancePlan) -> list[tuple[str, float, float]]:
    """``(word, start, end)`` in seconds for every word of a planned utterance, in order.

    A word spans its phones, from its first phone's start to its last phone's end (pauses and
    leading/trailing silence belong to no word).
    """
    phones = [span for span in plan.spans if span.phone != SILENCE]  # in time order, words' phones back to back
    lexicon = {word.spelling: word for word in LEXICON}
    alignment, at = [], 0
    for spelling in plan.words:
        count = len(lexicon[spelling].phones)
        alignment.append((spelling, phones[at].start, phones[at + count - 1].end))
        at += count
    return alignment


@dataclass(frozen=True)
class Prosody:
    """How an emotion shifts delivery, relative to the speaker's neutral voice."""

    f0_scale: float
    """Multiplies the F0 level."""
    f0_range: float
    """Multiplies the size of pitch accents and declination (intonation range)."""
    tempo: float
    """Speaking-rate factor: phone durations are divided by it."""
    gain_db: float
    """Loudness of active speech relative to neutral."""
    tilt: float
    """Added to the source's low-pass coefficient (negative: brighter, tenser voice)."""
    open_quotient: float
    """Added to the glottal open quotient (lower: pressed voice, higher: lax)."""
    breathiness: float
    """Multiplies the aspiration noise."""


#: Emotion classes as prosody, loosely after the acoustic correlates surveyed in emotional
#: speech research: happy and angry are higher, livelier and faster; sad lower, flatter,
#: slower, softer and breathier; angry the loudest and brightest.
EMOTION_PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    "happy": Prosody(1.18, 1.6, 1.1, 3.0, -0.1, -0.03, 1.0),
    "sad": Prosody(0.88, 0.5, 0.8, -6.0, 0.15, 0.08, 2.0),
    "angry": Prosody(1.1, 1.3, 1.15, 6.0, -0.25, -0.12, 0.7),
}

#: Mean phone durations (seconds) at neutral tempo, before lengthening and random spread.
_DURATIONS = {"vowel": 0.11, "nasal": 0.07, "liquid": 0.065, "fricative": 0.10, "stop": 0.09}
_MIN_DURATIONS = {"vowel": 0.045, "nasal": 0.04, "liquid": 0.04, "fricative": 0.05, "stop": 0.08}


@dataclass(kw_only=True)
class SynthConfig:
    """What to generate; the same config always gives the same bytes."""

    speakers: int = 8
    """Number of speakers (ids spk01, spk02, ...)."""
    utts_per_speaker: int = 24
    """Utterances per speaker (ids spk01-0001, ...); emotions cycle so each speaker gets a balanced share."""
    seed: int = 0
    """Seed of every random choice; a speaker or utterance depends only on it and its own index."""
    sample_rate: int = 16000
    """Sample rate of the wav files (Hz), at least 8000."""
    words_per_utt: tuple[int, int] = (1, 5)
    """Inclusive range of the number of lexicon words per utterance."""
    emotions: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
    """Emotion classes to use (a subset of EMOTION_PROSODY), assigned round-robin per speaker."""
    f0_range_hz: tuple[float, float] = (90.0, 240.0)
    """Range of speakers' neutral F0 (Hz), spread evenly on a log scale."""
    formant_scale_range: tuple[float, float] = (0.85, 1.2)
    """Range of speakers' vocal-tract scaling: every formant is multiplied by the speaker's factor."""
    level_db: float = -26.0
    """RMS level (dBFS) of the speech parts of a neutral utterance; emotions add their gain_db."""
    noise_floor_db: float = -70.0
    """RMS level (dBFS) of the white noise floor added to every utterance."""

    def __post_init__(self) -> None:
        if self.speakers < 1 or self.utts_per_speaker < 1:
            raise ConfigError("speakers and utts_per_speaker must be at least 1")
        if self.sample_rate < 8000:
            raise ConfigError(f"sample_rate must be at least 8000 Hz, got {self.sample_rate}")
        low, high = self.words_per_utt
        if not 1 <= low <= high:
            raise ConfigError(f"words_per_utt must be (min, max) with 1 <= min <= max, got {self.words_per_utt}")
        if not self.emotions or len(set(self.emotions)) != len(self.emotions):
            raise ConfigError(f"emotions must be a non-empty list without repeats, got {self.emotions}")
        unknown = [e for e in self.emotions if e not in EMOTION_PROSODY]
        if unknown:
            raise ConfigError(f"unknown emotion(s) {unknown}; known: {', '.join(EMOTION_PROSODY)}")
        if not 0 < self.f0_range_hz[0] <= self.f0_range_hz[1]:
            raise ConfigError(f"f0_range_hz must be (low, high) with 0 < low <= high, got {self.f0_range_hz}")
        if not 0 < self.formant_scale_range[0] <= self.formant_scale_range[1]:
            raise ConfigError(
                f"formant_scale_range must be (low, high) with 0 < low <= high, got {self.formant_scale_range}"
            )


@dataclass(frozen=True)
class SpeakerProfile:
    """A synthetic speaker: its voice plus speaking habits."""

    speaker_id: str
    voice: Voice
    rate: float
    """Speaking-rate factor (phone durations are divided by it)."""
    intonation: float
    """Multiplies the intonation range of every utterance."""


@dataclass(frozen=True)
class UtterancePlan:
    """Everything about one utterance except its audio samples."""

    utt_id: str
    speaker: SpeakerProfile
    emotion: str
    words: tuple[str, ...]
    spans: tuple[Span, ...]
    voice: Voice
    """The speaker's voice adjusted for the emotion."""
    f0: np.ndarray
    """F0 contour (Hz), one value per 1/FRAME_RATE s."""
    level_db: float
    """RMS level (dBFS) of the speech spans."""
    num_samples: int


def speaker_id(index: int, config: SynthConfig) -> str:
    """Speaker ``index`` (0-based) as ``spk01``...; all ids share a width so they sort numerically."""
    return f"spk{index + 1:0{max(2, len(str(config.speakers)))}d}"


def utterance_id(speaker: int, index: int, config: SynthConfig) -> str:
    """Utterance ``index`` (0-based) of a speaker: ``spk01-0001``; prefixed by the speaker, as Kaldi wants."""
    return f"{speaker_id(speaker, config)}-{index + 1:0{max(4, len(str(config.utts_per_speaker)))}d}"


def speaker_profile(config: SynthConfig, index: int) -> SpeakerProfile:
    """Speaker ``index`` (0-based): F0 and tract scaling from an R2 sequence, the rest random."""
    offset = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_CORPUS_STREAM,))).random(2)
    position = (offset + (index + 1) * np.asarray(_R2_STEPS)) % 1.0
    f0_low, f0_high = config.f0_range_hz
    scale_low, scale_high = config.formant_scale_range
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_SPEAKER_STREAM, index)))
    voice = Voice(
        f0_hz=float(f0_low * (f0_high / f0_low) ** position[0]),
        formant_scale=float(scale_low + (scale_high - scale_low) * position[1]),
        open_quotient=float(rng.uniform(0.5, 0.7)),
        tilt=float(rng.uniform(0.4, 0.65)),
        breathiness=float(rng.uniform(0.01, 0.06)),
        jitter=float(rng.uniform(0.003, 0.01)),
        shimmer=float(rng.uniform(0.02, 0.05)),
    )
    return SpeakerProfile(
        speaker_id(index, config), voice, rate=float(rng.uniform(0.9, 1.1)), intonation=float(rng.uniform(0.8, 1.2))
    )


def plan_utterance(config: SynthConfig, speaker: int, index: int) -> UtterancePlan:
    """Choose words, emotion, phone timings and F0 contour for one utterance (no audio)."""
    profile = speaker_profile(config, speaker)
    emotion = config.emotions[(index + speaker) % len(config.emotions)]
    prosody = EMOTION_PROSODY[emotion]
    rng = np.random.default_rng(_utterance_seed(config, speaker, index).spawn(2)[0])

    words = [LEXICON[i] for i in rng.integers(len(LEXICON), size=rng.integers(*config.words_per_utt, endpoint=True))]
    tempo = prosody.tempo * profile.rate
    spans: list[Span] = []
    accents: list[float] = []
    time = float(rng.uniform(0.08, 0.2))
    spans.append(Span(SILENCE, 0.0, time))
    for position, word in enumerate(words):
        if position > 0 and rng.random() < 0.5:
            pause = float(rng.uniform(0.04, 0.12)) / tempo
            spans.append(Span(SILENCE, time, time + pause))
            time += pause
        for phone_index, symbol in enumerate(word.phones):
            kind = PHONES[symbol].kind
            duration = _DURATIONS[kind] * float(np.exp(0.15 * rng.standard_normal())) / tempo
            if phone_index == word.stress:
                duration *= 1.35
            if position == len(words) - 1 and phone_index == len(word.phones) - 1:
                duration *= 1.25  # phrase-final lengthening
            duration = max(duration, _MIN_DURATIONS[kind])
            spans.append(Span(symbol, time, time + duration))
            if phone_index == word.stress:
                accents.append(time + duration / 2)
            time += duration
    end = time + float(rng.uniform(0.1, 0.2))
    spans.append(Span(SILENCE, time, end))

    # Intonation in octaves: declination over the phrase, a bump on each stressed vowel, slow drift.
    frames = np.arange(int(np.ceil(end * FRAME_RATE)) + 2) / FRAME_RATE  # (F,)
    intonation = prosody.f0_range * profile.intonation
    octaves = 0.08 - 0.2 * frames / end
    for centre in accents:
        octaves = octaves + float(rng.uniform(0.12, 0.28)) * np.exp(-0.5 * ((frames - centre) / 0.07) ** 2)
    drift_rate, drift_phase = rng.uniform(0.5, 2.0), rng.uniform(0, 2 * np.pi)
    octaves = intonation * octaves + 0.02 * np.sin(2 * np.pi * drift_rate * frames + drift_phase)
    base = profile.voice.f0_hz * prosody.f0_scale * float(np.exp(0.03 * rng.standard_normal()))
    voice = dataclasses.replace(
        profile.voice,
        tilt=float(np.clip(profile.voice.tilt + prosody.tilt, 0.0, 0.9)),
        open_quotient=float(np.clip(profile.voice.open_quotient + prosody.open_quotient, 0.35, 0.85)),
        breathiness=profile.voice.breathiness * prosody.breathiness,
    )
    return UtterancePlan(
        utt_id=utterance_id(speaker, index, config),
        speaker=profile,
        emotion=emotion,
        words=tuple(word.spelling for word in words),
        spans=tuple(spans),
        voice=voice,
        f0=base * 2.0**octaves,
        level_db=config.level_db + prosody.gain_db + float(rng.uniform(-1.0, 1.0)),
        num_samples=num_samples(spans, config.sample_rate),
    )


def render_utterance(config: SynthConfig, speaker: int, index: int) -> tuple[UtterancePlan, np.ndarray]:
    """The plan and the 16-bit samples (int16, shape (num_samples,)) of one utterance."""
    plan = plan_utterance(config, speaker, index)
    rng = np.random.default_rng(_utterance_seed(config, speaker, index).spawn(2)[1])
    audio = render(plan.spans, plan.voice, plan.f0, config.sample_rate, rng)
    speech = np.zeros(len(audio), dtype=bool)
    for span in plan.spans:
        if span.phone != SILENCE:
            speech[int(span.start * config.sample_rate) : int(span.end * config.sample_rate)] = True
    rms = float(np.sqrt(np.mean(audio[speech] ** 2)))
    audio = audio * (10.0 ** (plan.level_db / 20.0) / max(rms, 1e-12))
    audio = audio + rng.standard_normal(len(audio)) * 10.0 ** (config.noise_floor_db / 20.0)
    peak = float(np.max(np.abs(audio)))
    if peak > 0.95:  # never clip: turn the rare over-loud utterance down instead
        audio *= 0.95 / peak
    return plan, np.round(audio * 32767.0).astype(np.int16)


def synthesize_corpus(out_dir: str | Path, config: SynthConfig) -> DataDir:
    """Write the corpus as a Kaldi data dir: ``out_dir/wav/<utt>.wav`` plus the tables.

    Tables: wav.scp (absolute, resolved paths, so the dir works from any working
    directory), utt2spk, spk2utt, text (lowercase lexicon words), utt2emo, utt2dur,
    utt2num_samples, and lexicon.txt (word and phones); for SUPERB's tasks also utt2intent
    (:func:`intent_of`), utt2kw (the first word, a keyword), text.phn (the phones of the words,
    no silences) and the NIST CTM alignments words.ctm and phones.ctm (seconds). A wav that already has the expected
    length is kept (resume), unless it was made with different generation settings
    (``wav/.synth.json`` records them).
    The tables are written last, each atomically.
    """
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    _forget_stale_wavs(wav_dir, config)
    data = DataDir(text={}, utt2dur={}, utt2num_samples={}, labels={"emo": {}, "intent": {}, "kw": {}})
    phones: dict[str, list[Span]] = {}
    words: dict[str, list[tuple[str, float, float]]] = {}
    generated = 0
    jobs = [(s, u) for s in range(config.speakers) for u in range(config.utts_per_speaker)]
    for speaker, index in progress(jobs, desc="synth", total=len(jobs), unit="utt"):
        plan = plan_utterance(config, speaker, index)
        path = (wav_dir / f"{plan.utt_id}.wav").resolve()
        if not _complete(path, plan.num_samples, config.sample_rate):
            _, samples = render_utterance(config, speaker, index)
            with atomic_path(path) as tmp:
                sf.write(tmp, samples, config.sample_rate, subtype="PCM_16", format="WAV")
            generated += 1
        data.wav_scp[plan.utt_id] = str(path)
        data.utt2spk[plan.utt_id] = plan.speaker.speaker_id
        data.text[plan.utt_id] = " ".join(plan.words)
        data.utt2dur[plan.utt_id] = plan.num_samples / config.sample_rate
        data.utt2num_samples[plan.utt_id] = plan.num_samples
        data.labels["emo"][plan.utt_id] = plan.emotion
        data.labels["intent"][plan.utt_id] = intent_of(plan.words)
        data.labels["kw"][plan.utt_id] = plan.words[0]
        phones[plan.utt_id] = [span for span in plan.spans if span.phone != SILENCE]
        words[plan.utt_id] = word_alignment(plan)
    log.info("synth: generated %d wavs, kept %d complete ones", generated, len(jobs) - generated)
    data.save(out_dir)
    write_lexicon(out_dir / "lexicon.txt")
    write_synthetic_translations(out_dir, data.text)  # text.qaa, the second language (audiossl.data.translation)
    write_table(out_dir / "text.phn", {utt: " ".join(span.phone for span in spans) for utt, spans in phones.items()})
    write_ctm(out_dir / "words.ctm", words)
    write_ctm(out_dir / "phones.ctm", {u: [(s.phone, s.start, s.end) for s in spans] for u, spans in phones.items()})
    return data


def write_ctm(path: str | Path, alignments: dict[str, list[tuple[str, float, float]]]) -> Path:
    """NIST CTM (``utt 1 start duration token``, seconds with 3 decimals), utterances in Kaldi order.

    The recording is the utterance (channel 1), as in a data dir without ``segments``.
    """
    path = Path(path)
    with atomic_write(path) as handle:
        for utt in sorted(alignments, key=kaldi_sort_key):
            for token, start, end in alignments[utt]:
                handle.write(f"{utt} 1 {start:.3f} {end - start:.3f} {token}\n")
    return path


def read_ctm(path: str | Path) -> dict[str, list[tuple[str, float, float]]]:
    """What :func:`write_ctm` wrote (any NIST CTM): utt -> [(token, start, end)]; bad lines name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("alignment file not found", path)
    alignments: dict[str, list[tuple[str, float, float]]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";;"):
                continue
            try:
                utt, _, start, duration, token = fields[:5]
                begin, length = float(start), float(duration)
            except ValueError:
                raise DataError("expected 'utt channel start duration token'", path, number) from None
            if begin < 0 or length <= 0:
                raise DataError(f"start must be >= 0 and duration > 0, got {start} {duration}", path, number)
            alignments.setdefault(utt, []).append((token, begin, begin + length))
    return alignments


def write_lexicon(path: str | Path) -> Path:
    """The corpus lexicon in Kaldi's ``lexicon.txt`` format (``word phone ...``), e.g. for lexicon decoding."""
    path = Path(path)
    with atomic_write(path) as handle:
        for word in sorted(LEXICON, key=lambda w: w.spelling):
            handle.write(" ".join([word.spelling, *word.phones]) + "\n")
    return path


def describe_corpus(config: SynthConfig | None = None) -> str:
    """A human-readable account of the corpus a config makes.

    How the audio is made: speech is modelled, after Fant's acoustic theory of speech
    production (1960), as a sound source shaped by the resonances of the vocal tract.
    Voiced phones are excited by a train of glottal airflow pulses (raised-cosine opening,
    quarter-cosine closing) with period-to-period jitter and shimmer, differentiated for
    lip radiation and low-pass tilted; breath noise rides on the pulses. Fricatives are
    band-shaped noise, stops a silent closure, a noise burst and aspiration. As in Klatt's
    (1980) formant synthesiser, voiced sound passes a cascade of second-order resonators
    (F1-F5) whose F1-F3 glide every 5 ms between per-phone targets, and frication passes
    a parallel resonator. Speakers differ in F0 and in vocal-tract length (all formants
    scaled by one factor), plus voice quality and speaking rate; emotions change F0 level
    and range, tempo, loudness and voice quality.
    """
    config = config or SynthConfig()
    lines = [
        f"synthetic corpus: {config.speakers} speakers x {config.utts_per_speaker} utterances, "
        f"{config.sample_rate} Hz, seed {config.seed}",
        f"lexicon ({len(LEXICON)} words, {config.words_per_utt[0]}-{config.words_per_utt[1]} per utterance): "
        + " ".join(word.spelling for word in LEXICON),
        f"emotions: {', '.join(config.emotions)}",
        "speakers (neutral F0, formant scale):",
    ]
    for index in range(config.speakers):
        profile = speaker_profile(config, index)
        lines.append(f"  {profile.speaker_id}: {profile.voice.f0_hz:6.1f} Hz  x{profile.voice.formant_scale:.3f}")
    return "\n".join(lines)


def _utterance_seed(config: SynthConfig, speaker: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(config.seed, spawn_key=(_UTTERANCE_STREAM, speaker, index))


def _complete(path: Path, expected_samples: int, sample_rate: int) -> bool:
    """True if ``path`` is a readable mono 16-bit wav of exactly the expected length."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError):
        return False
    return (
        info.frames == expected_samples
        and info.samplerate == sample_rate
        and info.channels == 1
        and info.subtype == "PCM_16"
    )


def _forget_stale_wavs(wav_dir: Path, config: SynthConfig) -> None:
    """Delete our wavs if they were made with other settings, and record the current ones.

    The stamp holds every setting that shapes an utterance (not the corpus size, since
    utterances do not depend on it), so a resumed run only keeps audio it would have made.
    """
    settings = dataclasses.asdict(config)
    del settings["speakers"], settings["utts_per_speaker"]
    settings = json.loads(json.dumps({"version": GENERATOR_VERSION, **settings}))
    stamp = wav_dir / _STAMP
    try:
        if json.loads(stamp.read_text()) == settings:
            return
    except (OSError, ValueError):
        pass
    stale = [p for p in wav_dir.iterdir() if re.fullmatch(r"spk\d+-\d+\.wav", p.name)]
    if stale:
        log.info("synth: %d wavs in %s were made with other settings; regenerating", len(stale), wav_dir)
    for path in stale:
        path.unlink()
    with atomic_write(stamp) as handle:
        json.dump(settings, handle, indent=1, sort_keys=True)
