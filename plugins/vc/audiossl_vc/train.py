"""Train a vocoder on frozen encoder features: ``audiossl vc train-vocoder``.

Every training utterance is encoded once (the encoder is frozen) and its selected layers kept in
memory; steps draw random segments of ``segment_frames`` frames with the matching
``segment_frames x hop`` samples. ``mel-gl`` minimises the L1 distance between predicted and
true log-mels; ``hifigan`` alternates a discriminator step (LSGAN) and a generator step
(LSGAN + 2 x feature matching + 45 x mel L1), as in Kong et al. (2020).

The run dir gets ``config.yaml``, ``ckpt-<step>.pt`` (generator, layer weights, discriminators,
optimisers, step; atomic), ``train.jsonl`` and ``loss.png`` (:mod:`audiossl.engine.logging`).
A run continues from its newest checkpoint with ``resume``; segments are drawn from
``(seed, step)``, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml

from audiossl.config import to_dict
from audiossl.data.dataset import AudioDataset
from audiossl.engine.checkpoint import (
    prune_checkpoints,
    save_checkpoint,
)
from audiossl.engine.logging import RunLogger, plot_loss_curve
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import CHECKPOINT_FORMAT, atomic_write, checkpoint_path, latest_checkpoint, load_checkpoint
from audiossl.progress import progress
from audiossl.train.pretrained import load_pretrained
from audiossl_vc.features import LayerSelector, LayerSpec, encode_layers, feature_dim, frame_hop
from audiossl_vc.hifigan import (
    Discriminators,
    HifiGanConfig,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from audiossl_vc.matching import knn_match
from audiossl_vc.mel import LogMel, MelConfig
from audiossl_vc.vocoder import Vocoder, VocoderSpec

logger = logging.getLogger("audiossl.vc")


@dataclass(kw_only=True)
class VocoderTrainConfig:
    """How to train a vocoder."""

    kind: Literal["hifigan", "mel-gl"] = "mel-gl"
    """``hifigan`` (GAN vocoder, better audio, slower) or ``mel-gl`` (mel regressor + Griffin-Lim, quick)."""
    layer: str = "-1"
    """Encoder layer(s): an index (negative from the end), ``i,j,...`` (their mean) or ``mix`` (learned weights)."""
    preset: str = "tiny"
    """HiFi-GAN size: ``tiny`` (CPU, minutes), ``small`` or ``v1`` (the paper's)."""
    steps: int = 300
    """Optimiser steps in all (a resumed run continues up to this)."""
    batch_size: int = 8
    """Segments per step."""
    segment_frames: int = 24
    """Feature frames per training segment; shorter utterances are skipped."""
    lr: float | None = None
    """Learning rate (AdamW); None = 2e-4 for hifigan (the paper's), 1e-3 for mel-gl."""
    mel_weight: float = 45.0
    """Weight of the mel L1 loss (hifigan)."""
    feature_matching_weight: float = 2.0
    """Weight of the feature-matching loss (hifigan)."""
    regressor_channels: int = 128
    """Width of the mel regressor (mel-gl)."""
    regressor_blocks: int = 2
    """Residual blocks of the mel regressor (mel-gl)."""
    griffin_lim_iters: int = 32
    """Griffin-Lim iterations at synthesis (mel-gl)."""
    n_mels: int = 80
    """Mel bands of the mel loss / mel target (fewer at low rates, see MelConfig.for_features)."""
    prematch_k: int = 0
    """kNN-VC's prematched training: every training utterance's features are replaced by their ``k``-NN
    match against the same speaker's other utterances, so the vocoder learns to render matched frames
    (0 = off; needs a fixed layer spec, not ``mix``)."""
    max_utterances: int | None = None
    """Use at most this many utterances (the first in Kaldi order); None = all."""
    log_every: int = 10
    """Steps between log records."""
    checkpoint_every: int = 100
    """Steps between checkpoints (and one at the end)."""
    keep_last: int = 2
    """Checkpoints to keep."""
    seed: int = 0
    """Seed of the initial weights and of the segment draws."""
    device: str = "cpu"
    """Where the vocoder trains (``cpu``, ``cuda``); the frozen encoder extracts features on the CPU."""

    def __post_init__(self) -> None:
        if self.kind not in ("hifigan", "mel-gl"):
            raise ConfigError(f"kind must be hifigan or mel-gl, got {self.kind!r}")
        if self.prematch_k < 0:
            raise ConfigError(f"prematch_k must be >= 0, got {self.prematch_k}")
        if min(self.steps, self.batch_size, self.segment_frames, self.log_every, self.checkpoint_every) < 1:
            raise ConfigError("steps, batch_size, segment_frames, log_every and checkpoint_every must be positive")


@dataclass
class FeatureCache:
    """Selected layers (K, N, D) and waveforms (N x hop,) of every usable training utterance."""

    layers: list[torch.Tensor]
    waveforms: list[torch.Tensor]
    ids: list[str]
    speakers: list[str]


def cache_features(model, spec: LayerSpec, data_dirs: Sequence[str | Path], config: VocoderTrainConfig) -> FeatureCache:
    """Encode the training utterances once; keep those with at least ``segment_frames`` frames."""
    hop = frame_hop(model)
    cache = FeatureCache([], [], [], [])
    skipped = 0
    for dir_index, data_dir in enumerate(data_dirs):
        dataset = AudioDataset(data_dir, sample_rate=model.sample_rate, labels=("spk",))
        count = len(dataset) if config.max_utterances is None else min(len(dataset), config.max_utterances)
        for index in progress(range(count), desc=f"features {Path(data_dir).name}", total=count):
            item = dataset[index]
            stacked, lengths = encode_layers(
                model, item.waveform[None], torch.tensor([item.waveform.shape[0]]), spec.layers
            )
            frames = int(lengths[0])
            if frames < config.segment_frames:
                skipped += 1
                continue
            wave = torch.nn.functional.pad(item.waveform, (0, max(0, frames * hop - item.waveform.shape[0])))
            cache.layers.append(stacked[:, 0, :frames].clone())  # (K, N, D)
            cache.waveforms.append(wave[: frames * hop].clone())  # (N * hop,)
            cache.ids.append(item.id)
            cache.speakers.append(f"{dir_index}:{item.labels['spk']}")
    if not cache.ids:
        seconds = config.segment_frames * hop / model.sample_rate
        raise DataError(
            f"no utterance has {config.segment_frames} feature frames ({seconds:.2f} s); lower segment_frames",
            data_dirs[0],
        )
    if skipped:
        logger.warning("skipped %d utterance(s) shorter than %d frames", skipped, config.segment_frames)
    return cache


def prematch(cache: FeatureCache, spec: LayerSpec, k: int) -> int:
    """Replace every utterance's features by their k-NN match among its speaker's other utterances, in place.

    Returns how many utterances were matched (a speaker with one utterance keeps its own features).
    """
    if spec.mode == "mix":
        raise ConfigError("prematch_k needs a fixed layer spec (an index or 'i,j'), not 'mix'")
    selector = LayerSelector(spec)
    reduced = [selector(layers.unsqueeze(1))[0] for layers in cache.layers]  # each (N, D)
    by_speaker: dict[str, list[int]] = {}
    for index, speaker in enumerate(cache.speakers):
        by_speaker.setdefault(speaker, []).append(index)
    matched = 0
    for members in progress(list(by_speaker.values()), desc="prematch"):
        for index in members:
            others = [reduced[j] for j in members if j != index]
            if not others:
                continue
            features = knn_match(reduced[index], torch.cat(others), k)  # (N, D)
            cache.layers[index] = features.unsqueeze(0).expand(len(spec.layers), -1, -1)  # (K, N, D), K equal copies
            matched += 1
    return matched


def draw_batch(
    cache: FeatureCache, config: VocoderTrainConfig, hop: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments for ``step``: stacked layers (K, B, S, D) and waveforms (B, S x hop), drawn from (seed, step)."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    picks = torch.randint(len(cache.ids), (config.batch_size,), generator=generator).tolist()
    layers, waves = [], []
    for pick in picks:
        frames = cache.layers[pick].shape[1]
        start = int(torch.randint(frames - config.segment_frames + 1, (1,), generator=generator))
        layers.append(cache.layers[pick][:, start : start + config.segment_frames])
        waves.append(cache.waveforms[pick][start * hop : (start + config.segment_frames) * hop])
    return torch.stack(layers, dim=1), torch.stack(waves)  # (K, B, S, D), (B, S * hop)


@dataclass
class TrainResult:
    """Where a vocoder run ended."""

    run_dir: Path
    step: int
    checkpoint: Path
    last_loss: float


class VocoderTrainer:
    """Models, optimisers and the step functions of one vocoder run."""

    def __init__(self, spec: VocoderSpec, config: VocoderTrainConfig):
        torch.manual_seed(config.seed)
        self.spec = spec
        self.config = config
        self.device = torch.device(config.device)
        self.vocoder = Vocoder(spec).to(self.device)
        self.log_mel = LogMel(spec.mel).to(self.device)
        lr = config.lr if config.lr is not None else (2e-4 if spec.kind == "hifigan" else 1e-3)
        betas = (0.8, 0.99) if spec.kind == "hifigan" else (0.9, 0.99)
        params = list(self.vocoder.selector.parameters()) + list(self.vocoder.net.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=betas)
        self.discriminators = Discriminators(spec.hifigan).to(self.device) if spec.kind == "hifigan" else None
        self.disc_optimizer = (
            torch.optim.AdamW(self.discriminators.parameters(), lr=lr, betas=betas) if self.discriminators else None
        )

    def step(self, layers: torch.Tensor, waves: torch.Tensor) -> dict[str, float]:
        """One optimiser step on a batch of stacked layers (K, B, S, D) and waveforms (B, S x hop)."""
        self.vocoder.train()
        layers, waves = layers.to(self.device), waves.to(self.device)
        features = self.vocoder.selector(layers)  # (B, S, D)
        lengths = torch.full((features.shape[0],), features.shape[1], device=self.device)
        target_mel = self.log_mel(waves)  # (B, S * r, n_mels)
        if self.discriminators is None:
            mel, _ = self.vocoder.net(features, lengths)
            loss = (mel - target_mel).abs().mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            return {"loss": loss.item(), "mel": loss.item()}
        fake, _ = self.vocoder.net(features, lengths)  # (B, S * hop)
        real_scores, _ = self.discriminators(waves)
        fake_scores, _ = self.discriminators(fake.detach())
        disc_loss = discriminator_loss(real_scores, fake_scores)
        self.disc_optimizer.zero_grad()
        disc_loss.backward()
        self.disc_optimizer.step()
        _, real_maps = self.discriminators(waves)
        fake_scores, fake_maps = self.discriminators(fake)
        mel_loss = (self.log_mel(fake) - target_mel).abs().mean()
        adversarial = generator_adversarial_loss(fake_scores)
        matching = feature_matching_loss(real_maps, fake_maps)
        loss = adversarial + self.config.feature_matching_weight * matching + self.config.mel_weight * mel_loss
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {
            "loss": loss.item(),
            "mel": mel_loss.item(),
            "adversarial": adversarial.item(),
            "feature_matching": matching.item(),
            "discriminator": disc_loss.item(),
        }

    def state(self, step: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "vocoder": self.spec.to_dict(),
            "model": self.vocoder.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "discriminators": None if self.discriminators is None else self.discriminators.state_dict(),
            "disc_optimizer": None if self.disc_optimizer is None else self.disc_optimizer.state_dict(),
            "train_config": to_dict(self.config),
        }

    def load(self, state: dict) -> int:
        self.vocoder.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.discriminators is not None:
            self.discriminators.load_state_dict(state["discriminators"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        return int(state["step"])


def make_spec(model, model_path: str | Path, config: VocoderTrainConfig) -> VocoderSpec:
    """The vocoder spec for ``model``'s features under ``config``."""
    layer_spec = LayerSpec.parse(config.layer, model.encoder.num_layers)
    hop = frame_hop(model)
    return VocoderSpec(
        kind=config.kind,
        layers=layer_spec.layers,
        layer_mode=layer_spec.mode,
        in_dim=feature_dim(model),
        hop=hop,
        sample_rate=model.sample_rate,
        mel=MelConfig.for_features(model.sample_rate, hop, config.n_mels),
        hifigan=HifiGanConfig.preset(config.preset) if config.kind == "hifigan" else None,
        regressor_channels=config.regressor_channels,
        regressor_blocks=config.regressor_blocks,
        griffin_lim_iters=config.griffin_lim_iters,
        encoder=str(model_path),
    )


def train_vocoder(
    model_path: str | Path,
    data_dirs: Sequence[str | Path],
    run_dir: str | Path,
    config: VocoderTrainConfig,
    *,
    resume: bool = False,
) -> TrainResult:
    """Train (or with ``resume`` continue) a vocoder on the frozen features of ``model_path``."""
    run_dir = Path(run_dir)
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise ConfigError(
            "the run dir already has checkpoints; pass --resume to continue it or pick a new dir", run_dir
        )
    model = load_pretrained(model_path)
    spec = make_spec(model, model_path, config)
    trainer = VocoderTrainer(spec, config)
    step = 0
    if existing is not None:
        state = load_checkpoint(existing)
        saved = VocoderSpec.from_dict(state["vocoder"])
        if dataclasses.replace(saved, encoder="") != dataclasses.replace(spec, encoder=""):
            raise ConfigError("the run was started with other settings (kind, layer, preset or encoder)", existing)
        step = trainer.load(state)
        logger.info("resuming %s from step %d", run_dir, step)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(run_dir / "config.yaml") as handle:
        yaml.safe_dump({"model": str(model_path), "data": [str(d) for d in data_dirs], **to_dict(config)}, handle)
    cache = cache_features(model, spec.layer_spec, data_dirs, config)
    if config.prematch_k > 0:
        logger.info(
            "prematched %d utterance(s) with k=%d",
            prematch(cache, spec.layer_spec, config.prematch_k),
            config.prematch_k,
        )
    log = RunLogger(run_dir, tensorboard=False)
    log.write({"kind": "event", "event": "resume" if step else "start", "step": step, "utterances": len(cache.ids)})
    started, values, checkpoint = time.monotonic(), {"loss": float("nan")}, existing
    try:
        while step < config.steps:
            layers, waves = draw_batch(cache, config, spec.hop, step)
            values = trainer.step(layers, waves)
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                parts = {k: v for k, v in values.items() if k != "loss"}
                log.write({"kind": "train", "step": step, "loss": values["loss"], "parts": parts,
                           "elapsed_s": time.monotonic() - started})  # fmt: skip
            if step % config.checkpoint_every == 0 or step == config.steps:
                checkpoint = save_checkpoint(trainer.state(step), checkpoint_path(run_dir, step))
                prune_checkpoints(run_dir, config.keep_last)
                plot_loss_curve(run_dir / "train.jsonl", run_dir / "loss.png")
        log.write({"kind": "event", "event": "finish", "step": step})
    finally:
        log.close()
    if checkpoint is None:
        checkpoint = save_checkpoint(trainer.state(step), checkpoint_path(run_dir, step))
    return TrainResult(run_dir, step, Path(checkpoint), values["loss"])
