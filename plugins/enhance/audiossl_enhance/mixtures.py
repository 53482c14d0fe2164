"""Training material for enhancement and separation, written as Kaldi data dirs with their targets.

* :func:`make_noisy_pairs`: each utterance of a data dir plus noise at an SNR drawn from a
  list (white, pink or babble noise generated as :mod:`audiossl.audio.corrupt` does, or
  recordings of a noise data dir, MUSAN-style); ``wav.scp`` -> noisy wavs, ``utt2clean`` ->
  clean wavs, ``utt2snr``.
* :func:`pair_dirs`: given clean and noisy data dirs (Voicebank-DEMAND style), the same layout
  after checking that ids and lengths match.
* :func:`make_mixtures`: two-speaker mixtures (wsj0-2mix / Libri2Mix style): every utterance
  with ``per_utterance`` partners from *other* speakers, both sources brought to one RMS level
  and then set apart by a relative level drawn uniformly in ``[-level_db, level_db]`` dB,
  truncated to the shorter source (``min``) or padded to the longer (``max``); ``wav.scp`` ->
  mixtures, ``utt2src1`` / ``utt2src2`` -> scaled sources (they sum to the mixture),
  ``utt2spk`` / ``utt2spk2`` -> speakers, ``utt2level``.

Every random draw of an utterance comes from a generator seeded by (seed, utterance id), so
the output is the same on every run and for any subset. Audio is written as 32-bit float WAV
(the sources sum exactly to the input; levels scaled down together when a peak would reach
full scale), each file atomically, so an interrupted run resumes where it stopped
(``mixing.json`` records the settings; another setting in the same OUT is an error).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
import torch

from audiossl.audio.io import audio_info
from audiossl.data.kaldi import DataDir, kaldi_sort_key, read_entries
from audiossl.data.wav_scp import load_utterance
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.progress import progress

logger = logging.getLogger(__name__)

#: Settings file of an output dir.
SETTINGS_FILE = "mixing.json"
#: Peak level the written audio stays under.
PEAK = 0.99
#: RMS of each source before the relative level is applied (about -26 dBFS).
SOURCE_RMS = 0.05


def utterance_generator(seed: int, utt: str, salt: str = "") -> torch.Generator:
    """A CPU generator seeded by ``(seed, utt, salt)`` alone (stable across runs and processes)."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{salt}:{utt}".encode()) + (seed << 32))


def _write_wav(path: Path, wave: torch.Tensor, rate: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, wave.detach().cpu().numpy(), rate, subtype="FLOAT", format="WAV")


def _start(out_dir: Path, settings: dict) -> None:
    """Create OUT and record ``settings``; an OUT made with other settings is an error (never mixed)."""
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != settings:
            changed = sorted(key for key in set(saved) | set(settings) if saved.get(key) != settings.get(key))
            raise ConfigError(
                f"this dir was made with other settings ({', '.join(changed)} differ); choose another --out", path
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        json.dump(settings, handle, indent=2, sort_keys=True)
        handle.write("\n")


def _peak_scale(*waves: torch.Tensor) -> float:
    peak = max(float(wave.abs().max()) for wave in waves if wave.numel())
    return PEAK / peak if peak > PEAK else 1.0


@dataclass(kw_only=True)
class NoiseSettings:
    """How noisy copies are made."""

    snrs_db: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0)
    """SNRs (dB, speech power over noise power of the whole utterance), one drawn per utterance."""
    noise_kinds: tuple[str, ...] = ("white", "pink", "babble")
    """Generated noises drawn from (ignored with ``noise_dir``)."""
    noise_dir: str | None = None
    """Data dir of noise recordings, looped and cut at a random offset, instead of generated noise."""
    sample_rate: int = 16000
    """Rate of the written audio (the upstream's rate: the task trains on these files as they are)."""
    min_seconds: float = 0.25
    """Utterances shorter than this are left out (PESQ scores nothing shorter than 0.25 s)."""
    seed: int = 0
    """Seed of every draw (with the utterance id)."""

    def __post_init__(self) -> None:
        if self.min_seconds < 0:
            raise ConfigError(f"min_seconds must be >= 0, got {self.min_seconds}")
        if not self.snrs_db:
            raise ConfigError("give at least one SNR")
        if self.sample_rate < 8000:
            raise ConfigError(f"sample_rate must be at least 8000 Hz, got {self.sample_rate}")


def make_noisy_pairs(data_dir: str | Path, out_dir: str | Path, settings: NoiseSettings | None = None) -> DataDir:
    """Noisy copies of every utterance of ``data_dir`` with their clean targets, into ``out_dir``."""
    from audiossl.audio.corrupt import CorruptConfig
    from audiossl.data.corrupt import Corruptor

    settings = settings or NoiseSettings()
    data, out_dir = DataDir.load(data_dir), Path(out_dir)
    if not data.utterance_ids:
        raise DataError("data dir has no utterances (wav.scp is empty)", Path(data_dir) / "wav.scp")
    snrs = tuple(float(snr) for snr in settings.snrs_db)
    corrupt = CorruptConfig(
        noise_prob=1.0,
        reverb_prob=0.0,
        noise_kinds=tuple(settings.noise_kinds),
        noise_dir=settings.noise_dir,
        snr_db=(min(snrs), max(snrs)),
    )
    _start(out_dir, {"kind": "noisy-pairs", "source": str(Path(data_dir).resolve()), **asdict(settings)})
    corruptor = Corruptor(corrupt, settings.sample_rate)
    wav_scp, clean_table, snr_table = {}, {}, {}
    for utt in progress(_long_enough(data, settings.min_seconds, data_dir), "noisy pairs", unit="utt"):
        noisy_path, clean_path = out_dir / "noisy" / f"{utt}.wav", out_dir / "clean" / f"{utt}.wav"
        generator = utterance_generator(settings.seed, utt, "noise")
        snr = snrs[int(torch.randint(len(snrs), (), generator=generator))]
        if not (noisy_path.is_file() and clean_path.is_file()):
            clean = load_utterance(data, utt, settings.sample_rate)[0].float()
            noise = corruptor.noise(clean.numel(), generator) if clean.numel() else clean
            speech_power = clean.square().mean() if clean.numel() else torch.tensor(0.0)
            noise_power = noise.square().mean().clamp_min(1e-12) if clean.numel() else torch.tensor(1.0)
            noisy = clean + noise * torch.sqrt(speech_power / (noise_power * 10.0 ** (snr / 10.0)))
            scale = _peak_scale(noisy, clean) if clean.numel() else 1.0
            _write_wav(clean_path, clean * scale, settings.sample_rate)
            _write_wav(noisy_path, noisy * scale, settings.sample_rate)
        wav_scp[utt], clean_table[utt], snr_table[utt] = str(noisy_path.resolve()), str(clean_path.resolve()), snr
    labels = {"clean": clean_table, "snr": {utt: f"{snr:g}" for utt, snr in snr_table.items()}}
    return _save(out_dir, wav_scp, data.utt2spk or {utt: utt for utt in wav_scp}, labels, settings.sample_rate)


def pair_dirs(clean_dir: str | Path, noisy_dir: str | Path, out_dir: str | Path, sample_rate: int = 16000) -> DataDir:
    """A pair dir from clean and noisy data dirs with the same utterance ids and lengths."""
    clean, noisy, out_dir = DataDir.load(clean_dir), DataDir.load(noisy_dir), Path(out_dir)
    noisy_scp = Path(noisy_dir) / "wav.scp"
    lines = {entry.key: entry.line for entry in read_entries(noisy_scp)}
    missing = [utt for utt in clean.utterance_ids if utt not in set(noisy.utterance_ids)]
    extra = [utt for utt in noisy.utterance_ids if utt not in set(clean.utterance_ids)]
    if missing:
        raise DataError(
            f"{len(missing)} utterance(s) of the clean dir have no noisy version, e.g. {missing[0]!r}", noisy_scp
        )
    if extra:
        raise DataError(f"utterance {extra[0]!r} has no clean version in {clean_dir}", noisy_scp, lines.get(extra[0]))
    _start(
        out_dir,
        {
            "kind": "given-pairs",
            "clean": str(Path(clean_dir).resolve()),
            "noisy": str(Path(noisy_dir).resolve()),
            "sample_rate": sample_rate,
        },
    )
    wav_scp, clean_table = {}, {}
    for utt in progress(clean.utterance_ids, "pairs", unit="utt"):
        noisy_path, clean_path = out_dir / "noisy" / f"{utt}.wav", out_dir / "clean" / f"{utt}.wav"
        if not (noisy_path.is_file() and clean_path.is_file()):
            clean_wave = load_utterance(clean, utt, sample_rate)[0].float()
            noisy_wave = load_utterance(noisy, utt, sample_rate)[0].float()
            if clean_wave.numel() != noisy_wave.numel():
                raise DataError(
                    f"{utt}: the noisy audio has {noisy_wave.numel()} samples at {sample_rate} Hz, the clean "
                    f"{clean_wave.numel()}: pairs must be aligned and of one length",
                    noisy_scp,
                    lines.get(utt),
                )
            scale = _peak_scale(noisy_wave, clean_wave)
            _write_wav(clean_path, clean_wave * scale, sample_rate)
            _write_wav(noisy_path, noisy_wave * scale, sample_rate)
        wav_scp[utt], clean_table[utt] = str(noisy_path.resolve()), str(clean_path.resolve())
    return _save(out_dir, wav_scp, clean.utt2spk or {utt: utt for utt in wav_scp}, {"clean": clean_table}, sample_rate)


@dataclass(kw_only=True)
class MixSettings:
    """How two-speaker mixtures are made."""

    per_utterance: int = 1
    """Mixtures made with each utterance as the first source (each with another partner)."""
    level_db: float = 5.0
    """Relative level of source 1 over source 2 drawn uniformly in [-level_db, level_db] dB."""
    length: str = "min"
    """``min``: cut to the shorter source (Libri2Mix ``min``); ``max``: pad the shorter with silence."""
    sample_rate: int = 16000
    """Rate of the written audio (the upstream's rate)."""
    min_seconds: float = 0.25
    """Sources shorter than this are left out, so no mixture is shorter (PESQ's floor; the task's default)."""
    seed: int = 0
    """Seed of every draw (with the utterance id)."""

    def __post_init__(self) -> None:
        if self.per_utterance < 1 or self.level_db < 0 or self.min_seconds < 0:
            raise ConfigError("per_utterance must be >= 1, level_db >= 0 and min_seconds >= 0")
        if self.length not in ("min", "max"):
            raise ConfigError(f"length must be min or max, got {self.length!r}")
        if self.sample_rate < 8000:
            raise ConfigError(f"sample_rate must be at least 8000 Hz, got {self.sample_rate}")


def plan_mixtures(utt2spk: dict[str, str], settings: MixSettings) -> list[tuple[str, str, float]]:
    """(first utterance, partner of another speaker, relative level dB) of every mixture, deterministic."""
    utts = sorted(utt2spk, key=kaldi_sort_key)
    plans = []
    for utt in utts:
        others = [other for other in utts if utt2spk[other] != utt2spk[utt]]
        generator = utterance_generator(settings.seed, utt, "mix")
        order = torch.randperm(len(others), generator=generator).tolist()
        for index in order[: settings.per_utterance]:
            level = settings.level_db * (2.0 * float(torch.rand((), generator=generator)) - 1.0)
            plans.append((utt, others[index], level))
    return plans


def _mix(first: torch.Tensor, second: torch.Tensor, level_db: float, length: str) -> tuple[torch.Tensor, ...]:
    """Sources scaled to ``level_db`` apart, cut or padded to one length: (source 1, source 2, mixture)."""
    sources = []
    for wave, sign in ((first, 1.0), (second, -1.0)):
        rms = wave.square().mean().sqrt().clamp_min(1e-8)
        sources.append(wave / rms * SOURCE_RMS * 10.0 ** (sign * level_db / 40.0))
    size = min(w.numel() for w in sources) if length == "min" else max(w.numel() for w in sources)
    sources = [torch.nn.functional.pad(w[:size], (0, size - w[:size].numel())) for w in sources]
    mixture = sources[0] + sources[1]
    scale = _peak_scale(mixture, *sources)
    return sources[0] * scale, sources[1] * scale, mixture * scale


def make_mixtures(data_dir: str | Path, out_dir: str | Path, settings: MixSettings | None = None) -> DataDir:
    """Two-speaker mixtures of ``data_dir`` (needs utt2spk with two speakers or more) into ``out_dir``."""
    settings = settings or MixSettings()
    data, out_dir = DataDir.load(data_dir), Path(out_dir)
    utt2spk_path = Path(data_dir) / "utt2spk"
    if not data.utt2spk:
        raise DataError("separation mixes different speakers: the data dir needs utt2spk", utt2spk_path)
    speakers = sorted(set(data.utt2spk.values()))
    if len(speakers) < 2:
        raise DataError(
            f"only one speaker ({speakers[0]!r}): two-speaker mixtures need utterances of two speakers or more",
            utt2spk_path,
        )
    unknown = [utt for utt in data.utt2spk if utt not in set(data.utterance_ids)]
    if unknown:
        raise DataError(f"utterance {unknown[0]!r} of utt2spk is not in wav.scp", utt2spk_path)
    _start(out_dir, {"kind": "mixtures", "source": str(Path(data_dir).resolve()), **asdict(settings)})
    kept = set(_long_enough(data, settings.min_seconds, data_dir))
    plans = plan_mixtures({utt: spk for utt, spk in data.utt2spk.items() if utt in kept}, settings)
    if not plans:
        raise DataError(f"no two utterances of different speakers last {settings.min_seconds} s or more", utt2spk_path)
    wav_scp, src1, src2, spk2, levels, utt2spk = {}, {}, {}, {}, {}, {}
    for first, second, level in progress(plans, "mixtures", unit="mix"):
        mix_id = f"{first}_{second}"
        paths = [out_dir / folder / f"{mix_id}.wav" for folder in ("mix", "s1", "s2")]
        if not all(path.is_file() for path in paths):
            one = load_utterance(data, first, settings.sample_rate)[0].float()
            two = load_utterance(data, second, settings.sample_rate)[0].float()
            s1, s2, mixture = _mix(one, two, level, settings.length)
            _write_wav(paths[1], s1, settings.sample_rate)
            _write_wav(paths[2], s2, settings.sample_rate)
            _write_wav(paths[0], mixture, settings.sample_rate)
        wav_scp[mix_id], src1[mix_id], src2[mix_id] = (str(path.resolve()) for path in paths)
        utt2spk[mix_id], spk2[mix_id], levels[mix_id] = data.utt2spk[first], data.utt2spk[second], f"{level:.2f}"
    labels = {"src1": src1, "src2": src2, "spk2": spk2, "level": levels}
    return _save(out_dir, wav_scp, utt2spk, labels, settings.sample_rate)


def _long_enough(data: DataDir, min_seconds: float, data_dir: str | Path) -> list[str]:
    """Utterance ids lasting at least ``min_seconds`` (headers or utt2dur; the others are logged and left out)."""
    from audiossl.data.dataset import AudioDataset

    durations = AudioDataset(data).durations
    kept = [utt for utt, seconds in zip(data.utterance_ids, durations, strict=True) if seconds >= min_seconds]
    if len(kept) < len(durations):
        logger.info("%s: left out %d utterances shorter than %g s", data_dir, len(durations) - len(kept), min_seconds)
    if not kept:
        raise DataError(f"no utterance lasts {min_seconds} s or more", Path(data_dir) / "wav.scp")
    return kept


def _save(out_dir: Path, wav_scp: dict, utt2spk: dict, labels: dict[str, dict], sample_rate: int) -> DataDir:
    """Write the tables, with utt2num_samples and utt2dur from the written headers (no reader has to open them)."""
    samples = {utt: audio_info(path)[0] for utt, path in wav_scp.items()}
    data = DataDir(
        wav_scp=wav_scp,
        utt2spk={utt: utt2spk[utt] for utt in wav_scp},
        utt2num_samples=samples,
        utt2dur={utt: count / sample_rate for utt, count in samples.items()},
        labels=labels,
    )
    data.save(out_dir)
    return data


def speakers_of(data_dir: str | Path) -> list[tuple[str, str]]:
    """(speaker of source 1, speaker of source 2) of every mixture of a mixture dir."""
    data = DataDir.load(data_dir)
    return [(data.utt2spk[utt], data.labels["spk2"][utt]) for utt in data.utterance_ids]


def parse_snrs(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0,5,10"`` -> (0.0, 5.0, 10.0) (a ConfigError naming the bad value)."""
    if not isinstance(text, str):
        return tuple(float(value) for value in text)
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--snr: expected numbers separated by commas, got {text!r}") from None
