"""Pitch accuracy of converted singing: F0 RMSE in cents and voicing decision error (VDE).

Both compare a tracked output against a reference on the same frame grid:

* F0 RMSE (cents): ``sqrt(mean((1200 log2(f0_out / f0_ref))^2))`` over the frames voiced in both;
* VDE: the fraction of frames whose voiced/unvoiced decisions differ (Nakatani et al. 2008).

The reference is the source's own track with the conversion's key shift applied (so a converter
that sings the melody in the target's key scores 0), or the ``utt2f0`` track the synthetic
singer sang (:mod:`audiossl.data.singing`) resampled to the feature grid. Sums are kept so that
a corpus figure pools frames over utterances (:class:`PitchTally`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def reference_on_grid(f0: np.ndarray, frame_rate: float, hop: int, sample_rate: int, frames: int) -> torch.Tensor:
    """A reference F0 track (Hz, 0 = unvoiced) at ``frame_rate`` resampled to ``frames`` feature frames.

    Feature frame ``i`` is centred at ``(i + 0.5) hop / sample_rate`` seconds; it takes the nearest
    reference frame (so voicing is never interpolated across a boundary); past the end it is unvoiced.
    """
    centres = (np.arange(frames) + 0.5) * hop / sample_rate
    index = np.rint(centres * frame_rate).astype(np.int64)
    inside = index < len(f0)
    out = np.zeros(frames)
    out[inside] = f0[index[inside]]
    return torch.from_numpy(out).float()


@dataclass
class PitchTally:
    """Running sums of squared cents, voiced-in-both frames, voicing mismatches and frames."""

    squared_cents: float = 0.0
    both_voiced: int = 0
    mismatched: int = 0
    frames: int = 0

    def add(self, f0: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        """Score one utterance (F0 (N,) and reference (M,) in Hz, 0 = unvoiced) on their common frames."""
        frames = min(f0.shape[0], reference.shape[0])
        f0, reference = f0[:frames].double(), reference[:frames].double()
        voiced, voiced_ref = f0 > 0, reference > 0
        both = voiced & voiced_ref
        squared = float((1200 * torch.log2(f0[both] / reference[both])).square().sum()) if bool(both.any()) else 0.0
        mismatched = int((voiced != voiced_ref).sum())
        self.squared_cents += squared
        self.both_voiced += int(both.sum())
        self.mismatched += mismatched
        self.frames += frames
        return {
            "f0_rmse_cents": math.sqrt(squared / int(both.sum())) if bool(both.any()) else math.nan,
            "vde": mismatched / frames if frames else math.nan,
        }

    def summary(self) -> dict[str, float]:
        """Pooled F0 RMSE (cents) and VDE (fraction) over every frame added."""
        return {
            "f0_rmse_cents": math.sqrt(self.squared_cents / self.both_voiced) if self.both_voiced else math.nan,
            "vde": self.mismatched / self.frames if self.frames else math.nan,
            "frames": float(self.frames),
        }
