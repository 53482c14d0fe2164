"""Multi-speaker recordings mixed from a speaker-labelled data dir, with RTTM, UEM and a pyannote protocol.

Each recording takes ``speakers_per_recording`` speakers of one subset and lays out speech turns
(one utterance each): every speaker speaks at least once, two consecutive turns have different
speakers, and between turns there is either a silence or, with probability ``overlap``, an
overlap of the next turn with the end of the previous one. The reference turn of an utterance is
its speech, i.e. the utterance with leading and trailing silence trimmed (librosa, ``top_db``);
pauses inside an utterance stay inside the turn, as in human RTTM references.

Subsets (train, development, test) take disjoint speakers when there are enough of them, so a
test DER is measured on voices the segmentation model never heard; otherwise they share speakers
(a warning says so). Every recording is a pure function of ``(seed, subset, index)``.

Written into the output dir: ``wav/<uri>.wav``, ``<subset>.lst`` / ``.rttm`` / ``.uem``,
``database.yml`` (a pyannote.database speaker-diarization protocol, paths relative to the file)
and ``corpus.json`` (the settings). :func:`load_protocol` opens the protocol.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional

from audiossl.data.kaldi import DataDir
from audiossl.data.wav_scp import check_pipes, load_utterance
from audiossl.errors import ConfigError, DataError, UserError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.progress import progress

log = logging.getLogger(__name__)

SUBSETS = ("train", "development", "test")
DATABASE = "AudiosslMix"
TASK = "SpeakerDiarization"
PROTOCOL = "Mix"
#: Full name of the protocol ``database.yml`` declares.
PROTOCOL_NAME = f"{DATABASE}.{TASK}.{PROTOCOL}"
_STAMP = "corpus.json"


@dataclass(kw_only=True)
class CorpusConfig:
    """How many recordings, and how their turns are laid out."""

    recordings: tuple[int, int, int] = (40, 6, 6)
    """Recordings in the train, development and test subsets."""
    speakers_per_recording: int = 2
    """Speakers in every recording."""
    turns: tuple[int, int] = (4, 8)
    """Inclusive range of the number of turns (utterances) per recording."""
    overlap: float = 0.3
    """Probability that a turn starts before the previous one ends."""
    overlap_seconds: tuple[float, float] = (0.2, 0.8)
    """Range of an overlap (seconds), capped at half of the shorter of the two turns."""
    silence_seconds: tuple[float, float] = (0.1, 1.0)
    """Range of the silence between two turns that do not overlap (seconds)."""
    lead_seconds: tuple[float, float] = (0.2, 1.0)
    """Range of the silence before the first turn and after the last one."""
    top_db: float = 35.0
    """Trimming threshold (dB below the utterance's peak) that defines where speech begins and ends."""
    sample_rate: int | None = None
    """Rate of the recordings (Hz); None: the rate of the first source utterance."""
    seed: int = 0
    """Seed of every random choice."""

    def __post_init__(self) -> None:
        if len(self.recordings) != 3 or min(self.recordings) < 0 or self.recordings[0] < 1:
            raise ConfigError(f"recordings must be three counts (train >= 1, dev, test), got {self.recordings}")
        if self.speakers_per_recording < 1:
            raise ConfigError(f"speakers_per_recording must be >= 1, got {self.speakers_per_recording}")
        low, high = self.turns
        if not max(1, self.speakers_per_recording) <= low <= high:
            raise ConfigError(f"turns must be (min, max) with speakers_per_recording <= min <= max, got {self.turns}")
        if not 0.0 <= self.overlap <= 1.0:
            raise ConfigError(f"overlap is a probability, got {self.overlap}")
        for name in ("overlap_seconds", "silence_seconds", "lead_seconds"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high:
                raise ConfigError(f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}")


@dataclass(frozen=True)
class Turn:
    """One speaker's speech in a recording (seconds)."""

    speaker: str
    start: float
    end: float


@dataclass
class _Source:
    """A source utterance: its samples at the corpus rate and where its speech starts and ends."""

    samples: np.ndarray
    speech_start: int
    speech_end: int


def split_speakers(speakers: list[str], config: CorpusConfig) -> dict[str, list[str]]:
    """Speakers of every subset: disjoint when each used subset can get ``speakers_per_recording`` of its own."""
    used = [s for s, n in zip(SUBSETS, config.recordings, strict=True) if n > 0]
    need = config.speakers_per_recording
    if len(speakers) < need:
        raise DataError(f"the source has {len(speakers)} speaker(s); a recording needs {need}")
    if len(speakers) < need * len(used):
        log.warning(
            "only %d speakers for %d subsets of %d-speaker recordings: the subsets share speakers",
            len(speakers),
            len(used),
            need,
        )
        return {subset: list(speakers) for subset in used}
    shares = np.asarray([n for n in config.recordings if n > 0], dtype=float)
    sizes = np.maximum(need, np.floor(len(speakers) * shares / shares.sum())).astype(int)
    sizes[0] = len(speakers) - sizes[1:].sum()  # train gets the rest (>= need, as len >= need * subsets)
    groups, start = {}, 0
    for subset, size in zip(used, sizes, strict=True):
        groups[subset] = list(speakers[start : start + size])
        start += size
    return groups


def plan_recording(
    rng: np.random.Generator,
    speakers: list[str],
    durations: dict[str, list[tuple[str, float, float, float]]],
    config: CorpusConfig,
) -> tuple[list[tuple[str, str, float]], list[Turn], float]:
    """Lay out one recording: ``[(utt, speaker, offset seconds)]``, its reference turns and its duration.

    ``durations[speaker]`` lists ``(utt, duration, speech start, speech end)`` in seconds.
    """
    chosen = [speakers[i] for i in rng.choice(len(speakers), size=config.speakers_per_recording, replace=False)]
    count = int(rng.integers(config.turns[0], config.turns[1], endpoint=True))
    order = list(rng.permutation(chosen))  # every speaker speaks at least once
    while len(order) < count:
        others = [s for s in chosen if s != order[-1]] or chosen
        order.append(others[int(rng.integers(len(others)))])
    placed: list[tuple[str, str, float]] = []
    turns: list[Turn] = []
    cursor = float(rng.uniform(*config.lead_seconds))  # where the previous speech ended (or the lead)
    previous_length, previous_speaker = None, None
    for speaker in order:
        utt, _, speech_start, speech_end = durations[speaker][int(rng.integers(len(durations[speaker])))]
        length = speech_end - speech_start
        if previous_length is not None:
            if rng.random() < config.overlap and speaker != previous_speaker:  # nobody overlaps themself
                gap = -min(float(rng.uniform(*config.overlap_seconds)), 0.5 * min(length, previous_length))
            else:
                gap = float(rng.uniform(*config.silence_seconds))
            cursor += gap
        offset = cursor - speech_start  # the utterance's own leading silence may reach back before the cursor
        if offset < 0.0:
            cursor -= offset
            offset = 0.0
        placed.append((utt, speaker, offset))
        turns.append(Turn(speaker, cursor, cursor + length))
        cursor += length
        previous_length, previous_speaker = length, speaker
    lengths = {utt: duration for items in durations.values() for utt, duration, _, _ in items}
    end = max(offset + lengths[utt] for utt, _, offset in placed)
    total = max(end, cursor) + float(rng.uniform(*config.lead_seconds))
    return placed, turns, total


def _read_sources(data: DataDir, utts: list[str], rate: int, top_db: float) -> dict[str, _Source]:
    sources = {}
    for utt in progress(utts, desc="read sources", total=len(utts), unit="utt"):
        waveform, source_rate = load_utterance(data, utt)
        if waveform.dim() > 1:
            waveform = waveform.mean(dim=0)
        if source_rate != rate:
            waveform = torchaudio.functional.resample(waveform, source_rate, rate)
        samples = waveform.numpy().astype(np.float32)
        _, (start, end) = librosa.effects.trim(samples, top_db=top_db)
        if end <= start:
            raise DataError(f"utterance {utt} has no speech above the trimming threshold", data.path)
        sources[utt] = _Source(samples, int(start), int(end))
    return sources


def make_corpus(source_dir: str | Path, out_dir: str | Path, config: CorpusConfig, overwrite: bool = False) -> Path:
    """Mix recordings from ``source_dir`` (wav.scp + utt2spk) into ``out_dir``; see the module doc."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise UserError("the output dir exists and is not empty; use --overwrite to replace it", out_dir)
        if not (out_dir / _STAMP).is_file():
            raise UserError("refusing to overwrite a non-empty dir that is not a corpus made by make-corpus", out_dir)
        shutil.rmtree(out_dir)
    data = DataDir.load(source_dir)
    check_pipes(data)  # wav.scp pipes: refused before anything is mixed unless allowed (audiossl --allow-pipes)
    if not data.utt2spk:
        raise DataError("the source data dir has no utt2spk (speaker labels are needed)", source_dir)
    by_speaker: dict[str, list[str]] = {}
    for utt in data.utterance_ids:
        by_speaker.setdefault(data.utt2spk[utt], []).append(utt)
    groups = split_speakers(sorted(by_speaker), config)
    first_rate = load_utterance(data, data.utterance_ids[0])[1]
    rate = int(config.sample_rate or first_rate)
    used = sorted({u for speakers in groups.values() for s in speakers for u in by_speaker[s]})
    sources = _read_sources(data, used, rate, config.top_db)
    durations = {
        speaker: [
            (u, len(sources[u].samples) / rate, sources[u].speech_start / rate, sources[u].speech_end / rate)
            for u in by_speaker[speaker]
        ]
        for speaker in by_speaker
        if by_speaker[speaker][0] in sources
    }
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    for subset_index, (subset, count) in enumerate(zip(SUBSETS, config.recordings, strict=True)):
        uris, rttm, uem = [], [], []
        for index in range(count):
            rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(subset_index, index)))
            placed, turns, total = plan_recording(rng, groups[subset], durations, config)
            uri = f"{subset}_{index:04d}"
            mix = np.zeros(int(np.ceil(total * rate)), dtype=np.float32)  # (T,)
            for utt, _, offset in placed:
                start = int(round(offset * rate))
                samples = sources[utt].samples
                mix[start : start + len(samples)] += samples
            peak = float(np.abs(mix).max())
            if peak > 0.95:  # overlaps add up: turn the recording down rather than clip it
                mix *= 0.95 / peak
            with atomic_path(wav_dir / f"{uri}.wav") as tmp:
                sf.write(tmp, mix, rate, subtype="PCM_16", format="WAV")
            uris.append(uri)
            rttm += [rttm_line(uri, t.start, t.end, t.speaker) for t in sorted(turns, key=lambda t: t.start)]
            uem.append(f"{uri} 1 0.000 {len(mix) / rate:.3f}")
        for suffix, lines in (("lst", uris), ("rttm", rttm), ("uem", uem)):
            with atomic_write(out_dir / f"{subset}.{suffix}") as handle:
                handle.write("".join(line + "\n" for line in lines))
    write_database_yml(out_dir)
    with atomic_write(out_dir / _STAMP) as handle:
        json.dump(
            {
                "source": str(Path(source_dir).resolve()),
                "sample_rate": rate,
                "speakers": groups,
                "config": asdict(config),
            },
            handle,
            indent=2,
        )
    return out_dir


def rttm_line(uri: str, start: float, end: float, speaker: str) -> str:
    """One RTTM ``SPEAKER`` line (NIST RTTM: type, file, channel, onset, duration, ..., speaker name, ...)."""
    return f"SPEAKER {uri} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"


def write_database_yml(out_dir: Path) -> Path:
    """The pyannote.database configuration of the corpus (paths relative to the file, so the dir can move)."""
    import yaml

    protocol: dict = {"scope": "file"}  # speaker labels are compared within a recording
    for subset in SUBSETS:
        protocol[subset] = {"uri": f"{subset}.lst", "annotation": f"{subset}.rttm", "annotated": f"{subset}.uem"}
    document = {"Databases": {DATABASE: "wav/{uri}.wav"}, "Protocols": {DATABASE: {TASK: {PROTOCOL: protocol}}}}
    path = out_dir / "database.yml"
    with atomic_write(path) as handle:
        yaml.safe_dump(document, handle, sort_keys=False)
    return path


def load_protocol(corpus_dir: str | Path):
    """The corpus's pyannote.database protocol, files carrying ``audio`` (path), ``annotation`` and ``annotated``.

    The protocol goes into pyannote.database's global registry under :data:`PROTOCOL_NAME`, replacing
    any corpus loaded before (so the last corpus loaded wins).
    """
    from pyannote.database import FileFinder, registry
    from pyannote.database.registry import LoadingMode

    path = Path(corpus_dir) / "database.yml"
    if not path.is_file():
        raise DataError("no database.yml: not a corpus made by 'audiossl diarization make-corpus'", corpus_dir)
    registry.load_database(str(path.resolve()), mode=LoadingMode.OVERRIDE)
    return registry.get_protocol(PROTOCOL_NAME, preprocessors={"audio": FileFinder(registry=registry)})


def corpus_sample_rate(corpus_dir: str | Path) -> int:
    """The sample rate recorded in ``corpus.json``."""
    return int(json.loads((Path(corpus_dir) / _STAMP).read_text())["sample_rate"])


def read_waveform(path: str | Path) -> tuple[torch.Tensor, int]:
    """A mono waveform (T,) float32 and its rate."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(samples.mean(axis=1)), int(rate)
