"""Features of single utterances of a data dir (for plots and quick looks)."""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.errors import DataError


def utterance_features(
    data_dir: str | Path,
    frontend_name: str = "fbank",
    *,
    utt: str | None = None,
    sample_rate: int = 16000,
    frontend_config: object | None = None,
) -> tuple[str, torch.Tensor]:
    """Return ``(utt_id, features (F, C))`` of one utterance (the first when ``utt`` is None)."""
    from audiossl.audio.frontends import create_frontend
    from audiossl.data.dataset import AudioDataset, collate

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
