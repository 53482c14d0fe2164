"""Train a vocoder on frozen encoder features: ``audiossl vc train-vocoder``.

Every training utterance is encoded once (the encoder is frozen) and its selected layers kept in
memory; steps draw random segments of ``segment_frames`` frames with the matching
``segment_frames x hop`` samples. ``mel-gl`` minimises the L1 distance between predicted and
true log-mels; ``hifigan`` alternates a discriminator step (LSGAN) and a generator step
(LSGAN + 2 x feature matching + 45 x mel L1), as in Kong et al. (2020); ``neucosvc`` (NeuCoSVC's
synthesizer) also caches every utterance's F0 and loudness per frame (:mod:`audiossl_vc.pitch`)
and replaces the mel loss by a multi-resolution STFT loss.

The loop is audiossl's training engine (:mod:`audiossl.engine`, the unit is
:class:`VocoderUnit`), so the vocoder trains with DDP under torchrun and with
bf16/fp16 autocast. The run dir gets ``config.yaml``, ``ckpt-<step>.pt`` (generator, layer
weights, discriminators, optimisers, step; atomic), ``train.jsonl`` and ``loss.png``. A run
continues from its newest checkpoint with ``resume``; segments are drawn from ``(seed, step)``,
so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import nn

from audiossl.config import to_dict
from audiossl.data.dataset import AudioDataset
from audiossl.engine import Engine, EngineConfig, TrainUnit
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write, latest_checkpoint
from audiossl.models import load_pretrained, read_checkpoint
from audiossl.nn.outputs import LossOutput
from audiossl.progress import progress
from audiossl_vc.features import LayerSelector, LayerSpec, encode_layers, feature_dim, frame_hop
from audiossl_vc.hifigan import (
    HifiGanConfig,
)
from audiossl_vc.matching import knn_match
from audiossl_vc.mel import MelConfig
from audiossl_vc.neucosvc import NeuCoSVCConfig
from audiossl_vc.pitch import analyse
from audiossl_vc.trainer import GeneratorStep, VocoderTrainer  # noqa: F401  (GeneratorStep re-exported)
from audiossl_vc.vocoder import VocoderSpec

logger = logging.getLogger("audiossl.vc")


@dataclass(kw_only=True)
class VocoderTrainConfig:
    """How to train a vocoder."""

    kind: Literal["hifigan", "mel-gl", "neucosvc"] = "mel-gl"
    """``hifigan`` (GAN vocoder, better audio, slower), ``mel-gl`` (mel regressor + Griffin-Lim, quick) or
    ``neucosvc`` (NeuCoSVC's synthesizer: renders the source's F0 and loudness; for singing)."""
    layer: str = "-1"
    """Encoder layer(s): an index (negative from the end), ``i,j,...`` (their mean) or ``mix`` (learned weights)."""
    preset: str = "tiny"
    """Network size: HiFi-GAN ``tiny`` (CPU, minutes), ``small`` or ``v1`` (the paper's); NeuCoSVC ``tiny``
    (CPU) or ``base`` (GPU)."""
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
    """Weight of the feature-matching loss (hifigan, neucosvc)."""
    stft_weight: float = 20.0
    """Weight of the multi-resolution STFT loss (neucosvc); like HiFi-GAN's mel weight it keeps the
    reconstruction term dominant, which short CPU runs need."""
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
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast of the generator: ``bf16``, ``fp16`` (with a gradient scaler) or ``fp32``."""

    def __post_init__(self) -> None:
        if self.kind not in ("hifigan", "mel-gl", "neucosvc"):
            raise ConfigError(f"kind must be hifigan, mel-gl or neucosvc, got {self.kind!r}")
        if self.prematch_k < 0:
            raise ConfigError(f"prematch_k must be >= 0, got {self.prematch_k}")
        if min(self.steps, self.batch_size, self.segment_frames, self.log_every, self.checkpoint_every) < 1:
            raise ConfigError("steps, batch_size, segment_frames, log_every and checkpoint_every must be positive")


@dataclass
class FeatureCache:
    """Selected layers (K, N, D) and waveforms (N x hop,) of every usable training utterance; for
    ``neucosvc`` also F0 (N,) in Hz and loudness (N,) in dB."""

    layers: list[torch.Tensor]
    waveforms: list[torch.Tensor]
    ids: list[str]
    speakers: list[str]
    f0: list[torch.Tensor] = dataclasses.field(default_factory=list)
    loudness: list[torch.Tensor] = dataclasses.field(default_factory=list)


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
            if config.kind == "neucosvc":
                track = analyse(item.waveform, model.sample_rate, hop, frames)
                cache.f0.append(track.f0)
                cache.loudness.append(track.loudness)
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


def draw_batch(cache: FeatureCache, config: VocoderTrainConfig, hop: int, step: int) -> tuple[torch.Tensor, ...]:
    """Segments for ``step``: stacked layers (K, B, S, D) and waveforms (B, S x hop), drawn from (seed, step);
    with pitch in the cache also F0 (B, S) and loudness (B, S)."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    picks = torch.randint(len(cache.ids), (config.batch_size,), generator=generator).tolist()
    layers, waves, f0, loudness = [], [], [], []
    for pick in picks:
        frames = cache.layers[pick].shape[1]
        start = int(torch.randint(frames - config.segment_frames + 1, (1,), generator=generator))
        window = slice(start, start + config.segment_frames)
        layers.append(cache.layers[pick][:, window])
        waves.append(cache.waveforms[pick][start * hop : (start + config.segment_frames) * hop])
        if cache.f0:
            f0.append(cache.f0[pick][window])
            loudness.append(cache.loudness[pick][window])
    batch = (torch.stack(layers, dim=1), torch.stack(waves))  # (K, B, S, D), (B, S * hop)
    return batch + (torch.stack(f0), torch.stack(loudness)) if cache.f0 else batch  # + (B, S), (B, S)


@dataclass
class TrainResult:
    """Where a vocoder run ended."""

    run_dir: Path
    step: int
    checkpoint: Path
    last_loss: float


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
        neucosvc=NeuCoSVCConfig.preset(config.preset) if config.kind == "neucosvc" else None,
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
    """Train (or with ``resume`` continue) a vocoder on the frozen features of ``model_path``.

    The loop is audiossl's training engine (:class:`VocoderUnit`): under
    torchrun every process draws its own segments and the generator trains with DDP.
    """
    run_dir = Path(run_dir)
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise ConfigError(
            "the run dir already has checkpoints; pass --resume to continue it or pick a new dir", run_dir
        )
    if existing is None and resume:  # stopped before its first checkpoint: nothing to keep, so start it afresh
        logger.info(
            "resume: no checkpoint in %s yet (the run stopped before its first one); starting it from step 0", run_dir
        )
    model = load_pretrained(model_path)
    spec = make_spec(model, model_path, config)
    if existing is not None:
        saved = VocoderSpec.from_dict(read_checkpoint(existing, keys=("vocoder",))["vocoder"])
        if dataclasses.replace(saved, encoder="") != dataclasses.replace(spec, encoder=""):
            raise ConfigError("the run was started with other settings (kind, layer, preset or encoder)", existing)
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
    engine = Engine(VocoderUnit(spec, config, cache), engine_config(config), run_dir, resume=existing is not None)
    try:
        result = engine.train()
    finally:
        engine.close()
    return TrainResult(run_dir, result.step, Path(result.checkpoint), result.loss)


# ----------------------------------------------------------------------------- the engine's unit


def engine_config(config: VocoderTrainConfig) -> EngineConfig:
    """The engine settings of a vocoder run (constant lr, no clipping, no best.pt, no TensorBoard)."""
    lr = config.lr if config.lr is not None else (1e-3 if config.kind == "mel-gl" else 2e-4)
    return EngineConfig(
        max_steps=config.steps,
        seed=config.seed,
        device=config.device,
        precision=config.precision,
        lr=lr,
        betas=(0.9, 0.99) if config.kind == "mel-gl" else (0.8, 0.99),
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        keep_last=config.keep_last,
        keep_best=False,
        tensorboard=False,
        label="vocoder",
    )


class VocoderUnit(TrainUnit):
    """A vocoder of ``spec`` trained on the segments of ``cache``."""

    logger = logger

    def __init__(self, spec: VocoderSpec, config: VocoderTrainConfig, cache: FeatureCache):
        self.spec, self.settings, self.cache = spec, config, cache

    def setup(self, engine: Engine, restoring: bool) -> None:
        self.trainer = VocoderTrainer(self.spec, self.settings, device=engine.device)
        if self.trainer.discriminators is not None:
            self.trainer.run_discriminators = engine.wrap(self.trainer.discriminators)
        self.model = self.trainer.generator

    def parameter_groups(self, config: EngineConfig) -> list[dict[str, Any]]:
        return self.trainer.parameter_groups()

    def batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        engine, accumulation = self.engine, self.engine.config.accumulation_steps
        while True:
            for micro in range(accumulation):
                index = (engine.step * accumulation + micro) * engine.dist.world_size + engine.dist.rank
                yield draw_batch(self.cache, self.settings, self.spec.hop, index)

    def forward(self, model: nn.Module, item: tuple[torch.Tensor, ...], step: int) -> LossOutput:
        layers, waves, *pitch = item
        with self.engine.autocast():
            return self.trainer.loss(model, layers, waves, *pitch)

    def measure(self, item: tuple[torch.Tensor, ...]) -> tuple[int, float]:
        waves = item[1]
        return waves.shape[0], waves.numel() / self.spec.sample_rate

    def train(self, mode: bool = True) -> None:
        self.trainer.vocoder.train(mode)
        if self.trainer.discriminators is not None:
            self.trainer.discriminators.train(mode)

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.state_entries()

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        self.trainer.vocoder.load_state_dict(state["model"])
        if self.trainer.discriminators is not None:
            self.trainer.discriminators.load_state_dict(state["discriminators"])
            self.trainer.disc_optimizer.load_state_dict(state["disc_optimizer"])
