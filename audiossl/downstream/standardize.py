"""Per-dimension standardisation of an upstream's frozen features, estimated on the training data.

Frozen SSL layers (and raw log mel energies) come with per-dimension offsets and scales that
differ by orders of magnitude; a head trained by SGD on them converges slowly or not at all in
a few hundred steps, while scikit-learn users standardise first (``StandardScaler``) and
converge in closed form. :func:`feature_statistics` runs the upstream once over (a
deterministic sample of) the training dir and returns, for every layer the layer mix reads,
the mean and standard deviation of every dimension over all valid (non-padding) frames;
:meth:`~audiossl.downstream.upstream.Upstream.set_standardization` stores them as buffers, so
they are saved with the head in every checkpoint and applied again at evaluation.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.downstream.upstream import Upstream
from audiossl.progress import progress

logger = logging.getLogger(__name__)

#: Standard deviations below this are taken as this (constant dimensions are left centred, not blown up).
MIN_STD = 1e-5


class RunningMoments:
    """Sums of x and x^2 per layer and dimension over valid frames, in float64 (shifted for stability)."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None  # (L, D): the first batch's mean, subtracted before squaring
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, layers: list[torch.Tensor], lengths: torch.Tensor) -> None:
        """Add L tensors (B, S, D) whose first ``lengths`` (B,) frames are valid."""
        stacked = torch.stack([layer.detach().double() for layer in layers])  # (L, B, S, D)
        steps = torch.arange(stacked.shape[2], device=stacked.device)
        valid = (steps[None, :] < lengths.to(stacked.device)[:, None]).to(stacked.dtype)  # (B, S)
        frames = float(valid.sum())
        if frames == 0:
            return
        weight = valid[None, :, :, None]  # (1, B, S, 1)
        if self.shift is None:
            self.shift = (stacked * weight).sum(dim=(1, 2)) / frames  # (L, D)
            self.total = torch.zeros_like(self.shift)
            self.squares = torch.zeros_like(self.shift)
        centred = (stacked - self.shift[:, None, None, :]) * weight
        self.total += centred.sum(dim=(1, 2))
        self.squares += (centred * centred).sum(dim=(1, 2))
        self.count += int(frames)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each (L, D) float32; population standard deviation, at least :data:`MIN_STD`."""
        if self.shift is None or self.count == 0:
            raise ValueError("no valid frames to estimate statistics from")
        mean = self.total / self.count
        variance = (self.squares / self.count - mean * mean).clamp_min(0.0)
        return (self.shift + mean).float(), variance.sqrt().clamp_min(MIN_STD).float()


@torch.no_grad()
def feature_statistics(
    upstream: Upstream,
    data_dir: str | Path,
    *,
    max_utterances: int | None = 500,
    batch_seconds: float = 60.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (L', D) of the upstream's un-standardised layer-mix inputs over ``data_dir``'s valid frames.

    At most ``max_utterances`` utterances (a seeded sample, independent of file order) are read;
    None reads all. The upstream's current statistics are ignored (set to the identity while
    measuring and restored after).
    """
    dataset = AudioDataset(data_dir, sample_rate=upstream.sample_rate)
    indices = list(range(len(dataset)))
    if max_utterances is not None and len(indices) > max_utterances:
        indices = sorted(random.Random(f"standardize:{seed}").sample(indices, max_utterances))
    durations = [dataset.durations[i] for i in indices]
    sampler = BucketBatchSampler(durations, batch_seconds, num_buckets=1, shuffle=False)
    saved = (upstream.feature_mean.clone(), upstream.feature_std.clone())
    upstream.feature_mean.zero_()
    upstream.feature_std.fill_(1.0)
    was_training = upstream.training
    upstream.eval()
    moments = RunningMoments()
    try:
        for batch_indices in progress(list(sampler), desc="feature statistics", unit="batch"):
            batch = collate(dataset[[indices[i] for i in batch_indices]])
            layers, lengths = upstream.layers(batch.waveforms, batch.lengths)
            moments.add(layers, lengths)
    finally:
        upstream.feature_mean.copy_(saved[0])
        upstream.feature_std.copy_(saved[1])
        upstream.train(was_training)
    mean, std = moments.result()
    logger.info(
        "feature standardisation from %d utterances (%d frames): |mean| up to %.3g, std %.3g..%.3g",
        len(indices),
        moments.count,
        float(mean.abs().max()),
        float(std.min()),
        float(std.max()),
    )
    return mean, std
