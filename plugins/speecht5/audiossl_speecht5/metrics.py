"""Metrics of generated speech and translations: mel cepstral distortion with DTW (MCD), and BLEU (sacrebleu).

**MCD** (Kubichek, 1993) compares two utterances' mel cepstra frame by frame:
``MCD = (10 / ln 10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2)`` in dB, the energy coefficient
``c_0`` left out. Generated speech is not frame-synchronous with its reference, so the frames
are paired along the dynamic-time-warping path that minimises the summed per-frame distortion
(steps (1,1), (1,0), (0,1), all weighted 1; librosa's DTW), and the MCD of an utterance is the
mean over the path. Here the cepstra are the orthonormal DCT-II of the natural-log mel spectrum
(80 Slaney mel bands, 1024-point FFT, 256-sample hop at 16 kHz scaled to the rate), coefficients
1..24: a mel-frequency cepstrum like MFCCs, not SPTK's all-pass mel-cepstral analysis, so
figures compare across runs of this toolkit, not with papers that use ``mcep``.

**BLEU** (Papineni et al., 2002) is sacrebleu's corpus BLEU (Post, 2018) with its default
``13a`` tokenisation, one reference per segment, hypotheses paired to references by utterance id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import scipy.fft
import torch
import torchaudio

from audiossl.errors import DataError

#: Cepstral coefficients compared (c_1 .. c_D).
MCD_COEFFICIENTS = 24
#: dB per natural-log cepstral unit: 10 / ln 10, times sqrt 2 for the two-sided cepstrum.
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mel_cepstrum(log_mel: np.ndarray, coefficients: int = MCD_COEFFICIENTS) -> np.ndarray:
    """Mel cepstra (F, D) of natural-log mel spectra (F, n_mels): orthonormal DCT-II, c_1..c_D (c_0 dropped)."""
    if log_mel.shape[-1] <= coefficients:
        raise ValueError(f"{coefficients} cepstral coefficients need more than {coefficients} mel bands")
    return scipy.fft.dct(np.asarray(log_mel, dtype=np.float64), type=2, norm="ortho", axis=-1)[
        ..., 1 : coefficients + 1
    ]


def frame_distortion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MCD in dB between every frame of cepstra ``a`` (N, D) and every frame of ``b`` (M, D): (N, M)."""
    diff = a[:, None, :] - b[None, :, :]  # (N, M, D)
    return _MCD_SCALE * np.sqrt((diff**2).sum(axis=-1))


def mcd_dtw(reference: np.ndarray, generated: np.ndarray) -> tuple[float, int]:
    """Mean MCD (dB) along the DTW path between two cepstra sequences (N, D) and (M, D), and the path length."""
    if len(reference) == 0 or len(generated) == 0:
        raise ValueError("MCD needs at least one frame on each side")
    cost = frame_distortion(reference, generated)  # (N, M)
    _, path = librosa.sequence.dtw(C=cost, backtrack=True)  # (P, 2), end to start
    return float(cost[path[:, 0], path[:, 1]].mean()), len(path)


class MCDAnalysis:
    """Waveform (T,) -> mel cepstra (F, D) for MCD at ``sample_rate`` (see the module docstring)."""

    def __init__(self, sample_rate: int, n_mels: int = 80, coefficients: int = MCD_COEFFICIENTS):
        scale = sample_rate / 16000
        n_fft = 1 << max(8, round(math.log2(1024 * scale)))
        self.coefficients = coefficients
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=max(1, round(256 * scale)),
            n_mels=n_mels,
            power=1.0,
            norm="slaney",
            mel_scale="slaney",
            pad_mode="constant",  # zeros: also defined for utterances shorter than half an FFT window
        )

    def __call__(self, waveform: torch.Tensor | np.ndarray) -> np.ndarray:
        wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        with torch.no_grad():
            spec = self.mel(wave).clamp_min(1e-5).log().T.numpy()  # (F, n_mels)
        return mel_cepstrum(spec, self.coefficients)


@dataclass(frozen=True)
class MCDResult:
    """Corpus MCD: mean of the utterances' MCDs, and the frame-weighted mean along the paths."""

    mean: float
    frame_weighted: float
    utterances: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mcd": self.mean, "mcd_frame_weighted": self.frame_weighted, "mcd_utterances": self.utterances}


def corpus_mcd(pairs: list[tuple[np.ndarray, np.ndarray]]) -> MCDResult:
    """MCD-DTW over (reference cepstra, generated cepstra) pairs."""
    if not pairs:
        raise ValueError("no utterances to score")
    values, lengths = zip(*(mcd_dtw(ref, gen) for ref, gen in pairs), strict=True)
    weighted = sum(v * n for v, n in zip(values, lengths, strict=True)) / sum(lengths)
    return MCDResult(float(np.mean(values)), float(weighted), len(values))


@dataclass(frozen=True)
class BleuResult:
    """sacrebleu's corpus BLEU with its parts."""

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    hypothesis_length: int
    reference_length: int
    signature: str

    def as_dict(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {
            "bleu": self.score,
            "brevity_penalty": self.brevity_penalty,
            "hypothesis_length": self.hypothesis_length,
            "reference_length": self.reference_length,
            "bleu_signature": self.signature,
        }
        out.update({f"precision_{n + 1}": p for n, p in enumerate(self.precisions)})
        return out


def corpus_bleu(
    references: Mapping[str, str],
    hypotheses: Mapping[str, str],
    references_path: str | Path | None = None,
    hypotheses_path: str | Path | None = None,
) -> BleuResult:
    """Corpus BLEU of hypotheses against references, paired by utterance id (a missing or stray id is an error)."""
    import sacrebleu

    missing = [utt for utt in references if utt not in hypotheses]
    if missing:
        raise DataError(f"{len(missing)} reference(s) have no hypothesis, e.g. {missing[0]!r}", hypotheses_path)
    stray = [utt for utt in hypotheses if utt not in references]
    if stray:
        raise DataError(f"{len(stray)} hypothesis id(s) are not in the references, e.g. {stray[0]!r}", references_path)
    ids = list(references)
    metric = sacrebleu.BLEU()
    result = metric.corpus_score([hypotheses[u] for u in ids], [[references[u] for u in ids]])
    return BleuResult(
        score=float(result.score),
        precisions=tuple(float(p) for p in result.precisions),
        brevity_penalty=float(result.bp),
        hypothesis_length=int(result.sys_len),
        reference_length=int(result.ref_len),
        signature=str(metric.get_signature()),
    )
