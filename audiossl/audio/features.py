"""Features of single utterances of a data dir (for plots and quick looks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from audiossl.errors import DataError


def utterance_features(
    data_dir: str | Path,
    frontend: str = "fbank",
    *,
    utt: str | None = None,
    sample_rate: int = 16000,
    frontend_config: Any = None,
    allow_pipes: bool = True,
) -> tuple[str, torch.Tensor]:
    """``(utterance id, features (F, C))`` of one utterance (default: the first in Kaldi order).

    The audio is read at ``sample_rate``; front-ends with a ``sample_rate`` option are built
    with that rate unless ``frontend_config`` sets one.
    """
    from audiossl.audio.frontends import FRONTENDS, create_frontend
    from audiossl.audio.io import load_utterance
    from audiossl.data.kaldi import DataDir

    data = DataDir.load(data_dir)
    ids = data.utterance_ids
    if not ids:
        raise DataError("data directory has no utterances", data_dir)
    utt_id = ids[0] if utt is None else utt
    if utt_id not in ids:
        raise DataError(f"utterance {utt_id!r} is not in the data directory", Path(data_dir) / "wav.scp")
    overrides = {}
    config_class = FRONTENDS.get(frontend).config_class
    has_rate = "sample_rate" in getattr(config_class, "__dataclass_fields__", {})
    if has_rate and not (isinstance(frontend_config, dict) and "sample_rate" in frontend_config):
        if frontend_config is None or isinstance(frontend_config, dict):
            overrides["sample_rate"] = sample_rate
    module = create_frontend(frontend, frontend_config, **overrides).eval()
    waveform, _ = load_utterance(data, utt_id, sample_rate, allow_pipes)  # (T,)
    with torch.no_grad():
        features, frame_lengths = module(waveform.unsqueeze(0), torch.tensor([waveform.shape[-1]]))
    return utt_id, features[0, : int(frame_lengths[0])]
