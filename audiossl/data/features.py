"""Front-end features of a data dir: corpus statistics for normalisation, and one utterance for a look.

These walk a Kaldi data dir (dataset, length-bucketing sampler), so they live here, above
:mod:`audiossl.audio`, which computes features of waveforms it is given.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from audiossl.audio.frontends import FRONTENDS, create_frontend
from audiossl.audio.normalize import GlobalStats
from audiossl.data.dataset import AudioDataset, collate
from audiossl.data.sampler import BucketBatchSampler
from audiossl.errors import ConfigError, DataError
from audiossl.progress import progress as progress_bar


def compute_global_stats(
    data_dir: str | Path,
    frontend_name: str = "fbank",
    frontend_config: object | None = None,
    *,
    batch_seconds: float = 200.0,
    sample_rate: int | None = None,
    progress: bool = True,
    num_workers: int = 0,
    channel: int | None = None,
) -> GlobalStats:
    """Per-channel statistics of a front-end's features over every utterance of a Kaldi data dir.

    Utterances are read at the front-end's sample rate (``sample_rate`` overrides; 16 kHz for
    front-ends without one), batched by length so that a batch holds about ``batch_seconds``
    of padded audio, and streamed through the front-end; only the running sums are kept.
    ``channel``: which channel of multi-channel recordings (None: their mixdown), as in training.
    """
    if FRONTENDS.get(frontend_name).learnable:
        raise ConfigError(f"front-end {frontend_name!r} is learnable: its statistics change as it trains")
    frontend = create_frontend(frontend_name, frontend_config).eval()
    rate = sample_rate or getattr(frontend.config, "sample_rate", 16000)
    dataset = AudioDataset(data_dir, sample_rate=rate, channel=channel)
    sampler = BucketBatchSampler(dataset.durations, batch_seconds, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    stats = GlobalStats(frontend=frontend_name)
    batches = progress_bar(loader, desc="feature statistics", total=len(sampler), unit="batch") if progress else loader
    with torch.no_grad():
        for batch in batches:
            features, frame_lengths = frontend(batch.waveforms, batch.lengths)
            stats.update(features, frame_lengths)
    return stats


def utterance_features(
    data_dir: str | Path,
    frontend_name: str = "fbank",
    *,
    utt: str | None = None,
    sample_rate: int = 16000,
    frontend_config: object | None = None,
) -> tuple[str, torch.Tensor]:
    """Return ``(utt_id, features (F, C))`` of one utterance (the first when ``utt`` is None)."""
    dataset = AudioDataset(data_dir, sample_rate=sample_rate)
    ids = dataset.ids
    if not ids:
        raise DataError("data dir has no utterances", data_dir)
    if utt is None:
        index = 0
    elif utt in ids:
        index = ids.index(utt)
    else:
        raise DataError(f"utterance {utt!r} not found", Path(data_dir) / "wav.scp")
    batch = collate([dataset[index]])
    frontend = create_frontend(frontend_name, frontend_config).eval()
    with torch.no_grad():
        features, frame_lengths = frontend(batch.waveforms, batch.lengths)  # (1, F, C), (1,)
    return batch.ids[0], features[0, : int(frame_lengths[0])]
