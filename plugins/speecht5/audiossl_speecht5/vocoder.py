"""``audiossl tts train-vocoder``: a vc-plugin vocoder whose input features are the speech decoder's log-mels.

The vc plugin trains vocoders on an encoder's frames (:func:`audiossl_vc.train.train_vocoder`).
Its vocoder and training unit read any frame features of a fixed hop, so here the features are
the 80-band log-mels the speech decoder predicts (:class:`audiossl.models.speecht5.LogMelTarget`,
10 ms hop): ``hifigan`` becomes a mel-to-waveform HiFi-GAN (Kong et al. 2020) and ``mel-gl`` a
mel refiner before Griffin-Lim. The run dir is an ordinary vc vocoder run
(:func:`audiossl_vc.vocoder.load_vocoder` reads it); the synthesis commands take it as ``--vocoder``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from audiossl.config import to_dict
from audiossl.data.dataset import AudioDataset
from audiossl.engine import Engine
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write, latest_checkpoint
from audiossl.models import read_checkpoint
from audiossl.models.speecht5 import LogMelTarget, MelTargetConfig
from audiossl.progress import progress
from audiossl_vc.hifigan import HifiGanConfig
from audiossl_vc.mel import MelConfig
from audiossl_vc.train import FeatureCache, VocoderTrainConfig, VocoderUnit, engine_config
from audiossl_vc.vocoder import VocoderSpec

logger = logging.getLogger("audiossl.tts")


def mel_vocoder_spec(config: VocoderTrainConfig, mel: MelTargetConfig) -> VocoderSpec:
    """A vc vocoder spec whose input is one ``n_mels``-wide log-mel frame per ``hop_length`` samples."""
    return VocoderSpec(
        kind=config.kind,
        layers=(0,),
        layer_mode="single",
        in_dim=mel.n_mels,
        hop=mel.hop_length,
        sample_rate=mel.sample_rate,
        mel=MelConfig(
            sample_rate=mel.sample_rate, feature_hop=mel.hop_length, upsample=1, n_fft=mel.n_fft, n_mels=mel.n_mels
        ),
        hifigan=HifiGanConfig.preset(config.preset) if config.kind == "hifigan" else None,
        regressor_channels=config.regressor_channels,
        regressor_blocks=config.regressor_blocks,
        griffin_lim_iters=config.griffin_lim_iters,
        encoder="log-mel",
    )


def cache_log_mels(data_dirs: Sequence[str | Path], mel: MelTargetConfig, config: VocoderTrainConfig) -> FeatureCache:
    """Log-mels (1, F, n_mels) and waveforms (F x hop,) of every utterance with at least ``segment_frames`` frames."""
    target = LogMelTarget(mel)
    cache = FeatureCache([], [], [], [])
    for dir_index, data_dir in enumerate(data_dirs):
        dataset = AudioDataset(data_dir, sample_rate=mel.sample_rate, labels=("spk",))
        count = len(dataset) if config.max_utterances is None else min(len(dataset), config.max_utterances)
        for index in progress(range(count), desc=f"log-mels {Path(data_dir).name}", total=count):
            item = dataset[index]
            frames_mel, frames = target(item.waveform[None], torch.tensor([item.waveform.shape[0]]))
            frames = int(frames[0])
            if frames < config.segment_frames:
                continue
            cache.layers.append(frames_mel[:, :frames].clone())  # (1, F, n_mels)
            cache.waveforms.append(item.waveform[: frames * mel.hop_length].clone())
            cache.ids.append(item.id)
            cache.speakers.append(f"{dir_index}:{item.labels['spk']}")
    if not cache.ids:
        raise DataError(f"no utterance has {config.segment_frames} mel frames; lower segment_frames", data_dirs[0])
    return cache


def train_mel_vocoder(
    data_dirs: Sequence[str | Path],
    run_dir: str | Path,
    config: VocoderTrainConfig,
    mel: MelTargetConfig | None = None,
    *,
    resume: bool = False,
) -> Path:
    """Train (or continue) a vc vocoder on log-mels of ``data_dirs``; returns the last checkpoint."""
    if config.layer not in ("-1", "0") or config.prematch_k:
        raise ConfigError("a log-mel vocoder has one input 'layer' and no prematching")
    mel = mel or MelTargetConfig()
    run_dir = Path(run_dir)
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise ConfigError(
            "the run dir already has checkpoints; pass --resume to continue it or pick a new dir", run_dir
        )
    spec = mel_vocoder_spec(config, mel)
    if existing is not None:
        saved = VocoderSpec.from_dict(read_checkpoint(existing, keys=("vocoder",))["vocoder"])
        if dataclasses.asdict(saved) != dataclasses.asdict(spec):
            raise ConfigError("the run was started with other settings (kind, preset or mel)", existing)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / "config.yaml") as handle:
        yaml.safe_dump({"features": "log-mel", "data": [str(d) for d in data_dirs], **to_dict(config)}, handle)
    cache = cache_log_mels(data_dirs, mel, config)
    engine = Engine(VocoderUnit(spec, config, cache), engine_config(config), run_dir, resume=existing is not None)
    try:
        result = engine.train()
    finally:
        engine.close()
    return Path(result.checkpoint)
