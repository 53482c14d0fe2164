"""The target speaker's pool: the frames that converted speech is rebuilt from.

A target is given as a directory of audio files, a list of files, or a Kaldi data dir plus a
speaker id (its utterances from utt2spk). kNN-VC's quality grows with the amount of target
speech (Baas et al. report a clear drop below about 30 s), so a pool with less speech than
``min_seconds`` is refused with a :class:`~audiossl.errors.DataError` naming where it came from.
"Speech" is measured as the non-silent part of the audio (frames within 40 dB of the loudest,
as ``librosa.effects.split`` decides), so long silences do not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from audiossl.audio.io import SOUNDFILE_EXTENSIONS, load_audio
from audiossl.data.kaldi import DataDir
from audiossl.data.wav_scp import check_pipes, load_utterance
from audiossl.errors import DataError
from audiossl.models import PretrainedEncoder
from audiossl.progress import progress
from audiossl_vc.features import LayerSelector, LayerSpec, encode_utterance, frame_hop
from audiossl_vc.pitch import PitchTrack, analyse

#: Silence threshold (dB below the peak) of the speech measure.
SILENCE_TOP_DB = 40.0


@dataclass
class TargetSource:
    """Where target audio comes from: a description for messages and a loader per utterance."""

    description: str
    path: Path | None
    items: list[tuple[str, Path | None]] = field(default_factory=list)
    data: DataDir | None = None

    def load(self, index: int, sample_rate: int) -> torch.Tensor:
        """Waveform (T,) of item ``index`` at ``sample_rate``."""
        name, path = self.items[index]
        if self.data is not None:
            return load_utterance(self.data, name, sample_rate)[0]
        return load_audio(path, sample_rate)[0]


def target_source(
    target: str | Path | Sequence[str | Path], speaker: str | None = None, exclude: Sequence[str] = ()
) -> TargetSource:
    """Resolve a target: a data dir (with ``speaker``), a directory of audio files, one file, or a list of files.

    ``exclude`` drops utterance ids (data dirs) or file paths, e.g. the source utterance itself.
    """
    exclude = {str(item) for item in exclude} | {str(Path(item).resolve()) for item in exclude}
    if not isinstance(target, (str, Path)):
        files = [Path(item) for item in target]
        if not files:
            raise DataError("the target list of audio files is empty")
        items = [(str(p), p) for p in files if str(p.resolve()) not in exclude]
        return TargetSource(f"{len(files)} target file(s) starting with {files[0]}", files[0], items)
    path = Path(target)
    if speaker is not None:
        data = DataDir.load(path)
        check_pipes(data)  # wav.scp pipes: refused unless allowed (audiossl --allow-pipes)
        utts = [utt for utt, spk in data.utt2spk.items() if spk == speaker and utt not in exclude]
        if not utts:
            raise DataError(f"no utterance of speaker {speaker!r} in utt2spk", path / "utt2spk")
        return TargetSource(f"speaker {speaker!r} of {path}", path / "utt2spk", [(u, None) for u in utts], data)
    if path.is_dir():
        if (path / "wav.scp").is_file():
            raise DataError("a data dir as target needs a speaker (--target-speaker)", path)
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SOUNDFILE_EXTENSIONS and p.is_file())
        if not files:
            raise DataError("no audio files in the target directory", path)
        return TargetSource(str(path), path, [(str(p), p) for p in files if str(p.resolve()) not in exclude])
    if not path.exists():
        raise DataError("target not found", path)
    return TargetSource(str(path), path, [(str(path), path)])


def speech_seconds(waveform: torch.Tensor, sample_rate: int, top_db: float = SILENCE_TOP_DB) -> float:
    """Seconds of ``waveform`` (T,) that are not silence: ~32 ms frames (hop 8 ms) whose RMS is within
    ``top_db`` of the loudest frame's (the rule of ``librosa.effects.split``)."""
    samples = waveform.detach().float().cpu().flatten()
    if samples.numel() == 0 or not bool((samples != 0).any()):
        return 0.0
    frame = 1 << max(6, int(0.032 * sample_rate - 1).bit_length())  # a power of two
    hop = frame // 4
    padded = torch.nn.functional.pad(samples, (frame // 2, frame // 2))
    if padded.numel() < frame:
        padded = torch.nn.functional.pad(padded, (0, frame - padded.numel()))
    rms = padded.unfold(0, frame, hop).square().mean(dim=1).sqrt()  # (frames,)
    loud = 20 * torch.log10(rms.clamp_min(1e-10) / rms.max()) > -top_db
    return min(float(loud.sum()) * hop, samples.numel()) / sample_rate


@dataclass
class TargetPool:
    """Frames (M, D) of the target, how much speech they came from, and the source description; with
    ``with_pitch`` also every pool utterance's F0 and loudness (the target's register, for key shifts)."""

    features: torch.Tensor
    speech_seconds: float
    total_seconds: float
    source: str
    pitch: list[PitchTrack] = field(default_factory=list)
    path: Path | None = None
    """Where the pool came from (for messages)."""


def build_pool(
    model: PretrainedEncoder,
    spec: LayerSpec,
    source: TargetSource,
    *,
    selector: LayerSelector | None = None,
    min_seconds: float = 5.0,
    with_pitch: bool = False,
) -> TargetPool:
    """Encode every target utterance and stack their frames; refuse less than ``min_seconds`` of speech.

    ``with_pitch`` also tracks F0 and loudness of every utterance (pYIN: slower)."""
    rate = model.sample_rate
    waveforms = [source.load(i, rate) for i in range(len(source.items))]
    speech = sum(speech_seconds(w, rate) for w in waveforms)
    total = sum(w.shape[-1] for w in waveforms) / rate
    if speech < min_seconds:
        raise DataError(
            f"too little target speech: {speech:.1f} s of speech ({total:.1f} s of audio in {len(waveforms)} "
            f"file(s)) in {source.description}; at least {min_seconds:g} s needed (lower the minimum at your risk)",
            source.path,
        )
    frames = [encode_utterance(model, w, spec, selector) for w in progress(waveforms, desc="target pool")]
    pitch = []
    if with_pitch:
        hop = frame_hop(model)
        pairs = list(zip(waveforms, frames, strict=True))
        pitch = [analyse(wave, rate, hop, feats.shape[0]) for wave, feats in progress(pairs, desc="pool F0")]
    return TargetPool(torch.cat(frames), speech, total, source.description, pitch, source.path)  # (M, D)
