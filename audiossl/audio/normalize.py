"""Feature normalisation: corpus-level statistics and per-utterance CMVN, both padding-aware.

* :class:`GlobalStats` holds per-channel frame counts, sums and sums of squares (float64),
  so statistics of shards merge exactly. AST normalises its fbank input with one corpus
  mean and standard deviation over all bins (``scalar=True`` in :meth:`GlobalStats.apply`);
  per-channel statistics are the Kaldi ``compute-cmvn-stats`` convention.
* :func:`audiossl.data.features.compute_global_stats` streams a data dir through a front-end
  to fill them (one floor up: it walks a data dir).
* :func:`cmvn` normalises each utterance with its own statistics (Kaldi ``apply-cmvn``
  per utterance), over valid frames only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiossl.audio.moved import moved_attribute
from audiossl.errors import DataError
from audiossl.fileio import atomic_path
from audiossl.nn.masking import lengths_to_mask

#: Deprecated: compute_global_stats (it walks a data dir) moved up to audiossl.data.features.
_MOVED = {"compute_global_stats": "audiossl.data.features"}


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, _MOVED, name)


@dataclass
class GlobalStats:
    """Per-channel statistics over every valid frame of a corpus.

    ``count``: frames seen; ``sum`` and ``sum_squares``: (C,) float64 totals; ``utterances``:
    items seen; ``frontend``: name of the front-end that produced the features (informative).
    """

    count: int = 0
    sum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sum_squares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    utterances: int = 0
    frontend: str = ""

    @property
    def num_channels(self) -> int:
        return int(self.sum.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean (C,)."""
        return self.sum / max(self.count, 1)

    @property
    def var(self) -> np.ndarray:
        """Per-channel (biased) variance (C,)."""
        return np.maximum(self.sum_squares / max(self.count, 1) - self.mean**2, 0.0)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def scalar_mean(self) -> float:
        """Mean over all channels and frames (AST's ``dataset_mean``)."""
        return float(self.sum.sum() / max(self.count * self.num_channels, 1))

    @property
    def scalar_std(self) -> float:
        """Standard deviation over all channels and frames (AST's ``dataset_std``)."""
        total = max(self.count * self.num_channels, 1)
        return float(np.sqrt(max(self.sum_squares.sum() / total - self.scalar_mean**2, 0.0)))

    def update(self, features: torch.Tensor, frame_lengths: torch.Tensor) -> None:
        """Add the valid frames of a padded batch (B, F, C)."""
        valid = lengths_to_mask(frame_lengths.to(features.device), features.shape[1])  # (B, F)
        frames = features[valid].double()  # (N, C)
        if self.num_channels == 0:
            self.sum = np.zeros(features.shape[-1])
            self.sum_squares = np.zeros(features.shape[-1])
        elif features.shape[-1] != self.num_channels:
            raise ValueError(f"features have {features.shape[-1]} channels, statistics have {self.num_channels}")
        self.count += int(frames.shape[0])
        self.sum = self.sum + frames.sum(0).cpu().numpy()
        self.sum_squares = self.sum_squares + frames.square().sum(0).cpu().numpy()
        self.utterances += int(features.shape[0])

    def merge(self, other: GlobalStats) -> GlobalStats:
        """Statistics of both (e.g. of two shards), exactly."""
        if self.num_channels == 0:
            return GlobalStats(
                other.count, other.sum.copy(), other.sum_squares.copy(), other.utterances, other.frontend
            )
        if other.num_channels not in (0, self.num_channels):
            raise ValueError(f"cannot merge statistics of {self.num_channels} and {other.num_channels} channels")
        if other.num_channels == 0:
            return GlobalStats(self.count, self.sum.copy(), self.sum_squares.copy(), self.utterances, self.frontend)
        return GlobalStats(
            self.count + other.count,
            self.sum + other.sum,
            self.sum_squares + other.sum_squares,
            self.utterances + other.utterances,
            self.frontend or other.frontend,
        )

    def apply(
        self, features: torch.Tensor, frame_lengths: torch.Tensor, scalar: bool = False, eps: float = 1e-5
    ) -> torch.Tensor:
        """``(features - mean) / std`` per channel (or with the scalar AST statistics); padding stays zero."""
        if self.count == 0:
            raise ValueError("statistics are empty: no frames were seen")
        if scalar:
            mean, std = torch.tensor(self.scalar_mean), torch.tensor(self.scalar_std)
        else:
            mean, std = torch.from_numpy(self.mean), torch.from_numpy(self.std)
        mean = mean.to(device=features.device, dtype=features.dtype)
        std = std.to(device=features.device, dtype=features.dtype).clamp_min(eps)
        valid = lengths_to_mask(frame_lengths.to(features.device), features.shape[1]).unsqueeze(-1)  # (B, F, 1)
        return ((features - mean) / std).masked_fill_(~valid, 0.0)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` file atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    count=np.int64(self.count),
                    sum=self.sum,
                    sum_squares=self.sum_squares,
                    utterances=np.int64(self.utterances),
                    frontend=np.str_(self.frontend),
                )

    @classmethod
    def load(cls, path: str | Path) -> GlobalStats:
        """Read statistics written by :meth:`save`; a missing or malformed file is a :class:`DataError`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                fields: dict[str, Any] = {name: data[name] for name in ("count", "sum", "sum_squares", "utterances")}
                frontend = str(data["frontend"]) if "frontend" in data else ""
        except FileNotFoundError:
            raise DataError("statistics file not found", path) from None
        except (KeyError, ValueError, OSError) as error:
            raise DataError(f"not a statistics file written by GlobalStats.save: {error}", path) from None
        if fields["sum"].shape != fields["sum_squares"].shape or fields["sum"].ndim != 1:
            raise DataError("statistics file has inconsistent shapes", path)
        return cls(
            int(fields["count"]),
            fields["sum"].astype(np.float64),
            fields["sum_squares"].astype(np.float64),
            int(fields["utterances"]),
            frontend,
        )


def cmvn(
    features: torch.Tensor, frame_lengths: torch.Tensor, norm_vars: bool = True, eps: float = 1e-10
) -> torch.Tensor:
    """Per-utterance mean (and variance) normalisation over valid frames (B, F, C) -> (B, F, C).

    Statistics of each item come from its own valid frames only, so the result does not depend
    on padding; padding frames are zero. Items without frames stay all zero.
    """
    valid = lengths_to_mask(frame_lengths.to(features.device), features.shape[1]).unsqueeze(-1)  # (B, F, 1)
    count = valid.sum(1, keepdim=True).clamp_min(1).to(features.dtype)  # (B, 1, 1)
    features = features.masked_fill(~valid, 0.0)  # whatever the padding holds (even NaN) is ignored
    mean = features.sum(1, keepdim=True) / count  # (B, 1, C)
    centred = (features - mean).masked_fill_(~valid, 0.0)
    if not norm_vars:
        return centred
    var = centred.square().sum(1, keepdim=True) / count  # (B, 1, C)
    return centred / torch.sqrt(var + eps)
