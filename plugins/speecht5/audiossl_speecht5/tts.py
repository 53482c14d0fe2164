"""Text-to-speech with SpeechT5's encoder-decoder: text -> shared encoder -> speech decoder -> log-mel.

The model (:class:`TTSModel`) is SpeechT5's text path (Ao et al. 2022): characters through the
text pre-net and the shared Transformer encoder (:mod:`audiossl.encoders.speecht5`), then the
speech decoder of :class:`audiossl.models.speecht5.SpeechT5Backbone` (mel pre-net with the speaker
embedding, decoder, post-net with stop logits, refiner). ``init`` starts every part from a
``speecht5`` pretraining run (its tokenizer too); without it the same architecture starts from
random weights. Speakers are rows of a learned table (one per training speaker), chosen at
synthesis by name.

Training is a unit of audiossl's engine (checkpoints, exact resume, logs, DDP). A run dir holds
``tts.json`` (the config, speakers, tokenizer and architecture), ``ckpt-<step>.pt``,
``train.jsonl`` and ``loss.png``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.config import from_dict, to_dict
from audiossl.data.dataset import AudioDataset, Batch
from audiossl.data.kaldi import read_entries, read_table
from audiossl.data.text import EOS, Sentence, build_tokenizer, tokenizer_from_state
from audiossl.downstream.unit import Batches
from audiossl.encoders import create_encoder
from audiossl.encoders.speecht5 import SpeechT5EncoderConfig
from audiossl.engine import Engine, EngineConfig, TrainUnit
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write, latest_checkpoint
from audiossl.models import read_checkpoint
from audiossl.models.speecht5 import MelOutput, SpeechT5Backbone, SpeechT5BackboneConfig, load_speecht5
from audiossl.nn.outputs import LossOutput
from audiossl_speecht5.speech import check_frames, speaker_index, speech_decoder_loss

logger = logging.getLogger("audiossl.tts")

#: The run description next to the checkpoints.
RUN_FILE = "tts.json"


@dataclass(kw_only=True)
class TTSConfig:
    """How a TTS model is built and trained."""

    init: str | None = None
    """A ``speecht5`` pretraining run dir or checkpoint whose encoder, decoder, pre/post-nets and tokenizer
    start the model; None = random weights and a character tokenizer of the training text."""
    encoder_preset: str = "tiny"
    """SpeechT5 encoder preset without ``init`` (tiny: 192 wide, 6 blocks; base: 768, 12)."""
    encoder_layers: int | None = None
    """Override of the preset's encoder blocks (None: the preset's)."""
    dim: int | None = None
    """Override of the preset's width (None: the preset's); heads and feed-forward follow."""
    decoder_layers: int = 3
    """Decoder blocks without ``init``."""
    reduction: int = 2
    """Mel frames per decoder step without ``init`` (the pretrained reduction otherwise)."""
    max_frames: int = 1000
    """Longest utterance in mel frames (10 ms): longer training utterances are an error naming them."""
    stop_weight: float = 5.0
    """Weight of the positive (last-frame) class in the stop BCE."""
    max_steps: int = 2000
    """Optimizer steps."""
    lr: float = 1.0e-3
    """Peak learning rate (AdamW)."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay of weight matrices."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm (None: no clipping)."""
    batch_seconds: float = 60.0
    """Padded seconds of audio per batch."""
    num_workers: int = 0
    """DataLoader worker processes."""
    seed: int = 0
    """Seed of the weights, batch order and pre-net dropout."""
    device: str = "auto"
    """auto, cpu, cuda ..."""
    log_every: int = 10
    """Steps between log records."""
    checkpoint_every: int = 500
    """Steps between checkpoints (the last step always saves)."""
    keep_last: int = 2
    """Checkpoints kept."""

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.reduction < 1 or self.max_steps < 1 or self.batch_seconds <= 0:
            raise ConfigError("max_frames, reduction, max_steps and batch_seconds must be positive")


@dataclass
class TTSDescription:
    """Everything that rebuilds a TTS model before its weights load (``tts.json``)."""

    config: TTSConfig
    speakers: list[str]
    tokenizer: dict[str, Any]
    encoder: dict[str, Any]
    backbone: dict[str, Any]
    train_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, run_dir: Path) -> None:
        data = {
            "task": "tts",
            "config": to_dict(self.config),
            "speakers": self.speakers,
            "tokenizer": self.tokenizer,
            "encoder": self.encoder,
            "backbone": self.backbone,
            "train_dir": self.train_dir,
        }
        with atomic_write(run_dir / RUN_FILE) as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")

    @staticmethod
    def load(run_dir: str | Path) -> TTSDescription:
        path = Path(run_dir) / RUN_FILE
        if not path.is_file():
            raise DataError(f"not a TTS run dir ({RUN_FILE} is missing)", path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return TTSDescription(
            from_dict(TTSConfig, data["config"]),
            list(data["speakers"]),
            data["tokenizer"],
            data["encoder"],
            data["backbone"],
            data.get("train_dir", ""),
        )


class TTSModel(nn.Module):
    """Text tokens (B, S) -> shared encoder -> speech decoder -> :class:`MelOutput` / generated log-mel."""

    def __init__(self, encoder: nn.Module, backbone: SpeechT5Backbone):
        super().__init__()
        self.encoder = encoder
        self.backbone = backbone

    @property
    def max_frames(self) -> int:
        """Most mel frames the decoder can produce."""
        return (self.backbone.config.max_length - 1) * self.backbone.config.speech.reduction

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.backbone.encode_text(self.encoder, tokens, lengths)
        return out.last, out.lengths  # (B, S, D), (B,)

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        mels: torch.Tensor,
        frame_lengths: torch.Tensor,
        speakers: torch.Tensor,
    ) -> MelOutput:
        memory, memory_lengths = self.encode(tokens, token_lengths)
        return self.backbone.decode_speech(mels, frame_lengths, memory, memory_lengths, speakers)

    @torch.no_grad()
    def generate(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor, speakers: torch.Tensor, max_frames: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel (B, F, n_mels) and frame lengths (B,) until each item's stop probability passes 0.5."""
        memory, memory_lengths = self.encode(tokens, token_lengths)
        limit = min(max_frames or self.max_frames, self.max_frames)
        return self.backbone.generate_speech(memory, memory_lengths, speakers, max_frames=limit)


def text_tokens(
    tokenizer, texts: Sequence[str], where: Sequence[tuple] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, S) + eos, padded with 0, and lengths (B,); unknown characters are a DataError at ``where``."""
    rows = []
    for index, text in enumerate(texts):
        ids = tokenizer.encode(" ".join(text.split()), where[index] if where else (None, None))
        rows.append([*ids, EOS])
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    tokens = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, : len(row)] = torch.tensor(row)
    return tokens, lengths


def build_model(description: TTSDescription) -> TTSModel:
    """A TTS model of ``description`` (random weights; load a checkpoint or ``init`` after)."""
    encoder = create_encoder("speecht5", config=from_dict(SpeechT5EncoderConfig, description.encoder))
    tokenizer = tokenizer_from_state(description.tokenizer)
    backbone_config = from_dict(SpeechT5BackboneConfig, description.backbone)
    return TTSModel(encoder, SpeechT5Backbone(backbone_config, encoder.dim, tokenizer))


def describe(train_dir: Path, config: TTSConfig) -> tuple[TTSDescription, TTSModel]:
    """The description and the initial model of a new run on ``train_dir``."""
    speakers = sorted(set(read_table(train_dir / "utt2spk").values()))
    if config.init is not None:
        pretrained = load_speecht5(config.init)
        if pretrained.tokenizer is None:
            raise ConfigError(
                "this speecht5 run was pretrained without text (--text): it has no text encoder", config.init
            )
        backbone = to_dict(pretrained.backbone.config)
        backbone["num_speakers"] = len(speakers)
        limit = (backbone["max_length"] - 1) * backbone["speech"]["reduction"]
        if config.max_frames > limit:
            raise ConfigError(f"max_frames {config.max_frames} exceeds the pretrained decoder's {limit} frames")
        description = TTSDescription(
            config, speakers, pretrained.tokenizer.state(), to_dict(pretrained.encoder.config), backbone, str(train_dir)
        )
        model = build_model(description)
        model.encoder.load_state_dict(pretrained.encoder.state_dict())
        missing, unexpected = model.backbone.load_state_dict(pretrained.backbone.state_dict(), strict=False)
        if unexpected or any(not k.startswith("speakers.") for k in missing):
            raise ConfigError(
                f"pretrained weights do not fit (missing {missing}, unexpected {unexpected})", config.init
            )
        return description, model
    encoder_config = create_encoder("speecht5", preset=config.encoder_preset).config
    if config.encoder_layers is not None:
        encoder_config.num_layers = config.encoder_layers
    if config.dim is not None:
        encoder_config.dim, encoder_config.ffn_dim = config.dim, 4 * config.dim
        encoder_config.num_heads = max(h for h in (1, 2, 4, 8, 12) if config.dim % h == 0 and config.dim // h >= 16)
    text = train_dir / "text"
    sentences = [Sentence(" ".join(e.value.split()), e.line) for e in read_entries(text)]
    backbone = SpeechT5BackboneConfig(
        decoder_layers=config.decoder_layers,
        max_length=math.ceil(config.max_frames / config.reduction) + 1,
        num_speakers=len(speakers),
    )
    backbone.speech.reduction = config.reduction
    description = TTSDescription(
        config,
        speakers,
        build_tokenizer(sentences, "char").state(),
        to_dict(encoder_config),
        to_dict(backbone),
        str(train_dir),
    )
    torch.manual_seed(config.seed)
    return description, build_model(description)


def check_training_data(data_dir: Path, description: TTSDescription, model: TTSModel) -> None:
    """Every transcript encodable (DataError at its line) and every utterance within the decoder's frames."""
    tokenizer = model.backbone.tokenizer
    text = data_dir / "text"
    for entry in read_entries(text):
        tokenizer.encode(" ".join(entry.value.split()), (text, entry.line))
    dataset = AudioDataset(data_dir, sample_rate=model.backbone.config.mel.sample_rate, labels=("text", "spk"))
    hop, rate = model.backbone.config.mel.hop_length, model.backbone.config.mel.sample_rate
    frames = [int(round(d * rate)) // hop for d in dataset.durations]
    check_frames(dataset.ids, frames, min(description.config.max_frames, model.max_frames), data_dir / "wav.scp")
    unknown = sorted(set(read_table(data_dir / "utt2spk").values()) - set(description.speakers))
    if unknown:
        raise DataError(f"speaker(s) {unknown[:5]} are not in the run's speaker table", data_dir / "utt2spk")


class TTSUnit(TrainUnit):
    """The TTS model trained on a data dir's (text, speaker, audio) triples."""

    logger = logger

    def __init__(self, description: TTSDescription, model: TTSModel, data_dir: Path):
        self.description, self.initial, self.data_dir = description, model, data_dir
        self.config = description.config

    def setup(self, engine: Engine, restoring: bool) -> None:
        self.model = self.initial.to(engine.device)
        self.device = engine.device
        self.mel = self.model.backbone.mel
        dataset = AudioDataset(self.data_dir, sample_rate=self.mel.config.sample_rate, labels=("text", "spk"))
        self.data = Batches(dataset, self.config, engine.dist.rank, engine.dist.world_size)

    def batches(self) -> Iterator[Batch]:
        return iter(self.data)

    def forward(self, model: nn.Module, item: Batch, step: int) -> LossOutput:
        item = item.to(self.device)
        tokens, token_lengths = text_tokens(self.model.backbone.tokenizer, item.labels["text"])
        speakers = torch.tensor([self.description.speakers.index(s) for s in item.labels["spk"]], device=self.device)
        target, frame_lengths = self.mel(item.waveforms, item.lengths)
        with self.engine.autocast():
            out = model(tokens.to(self.device), token_lengths.to(self.device), target, frame_lengths, speakers)
        return speech_decoder_loss(out, target, frame_lengths, self.config.stop_weight)

    def measure(self, item: Batch) -> tuple[int, float]:
        return len(item.ids), float(item.lengths.sum()) / self.mel.config.sample_rate

    def describe(self, item: Batch) -> str:
        return f"utterances {', '.join(item.ids[:5])}"

    @property
    def epoch(self) -> int:
        return self.data.epoch

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "tts", "model": self.model.state_dict(), "sampler": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        self.model.load_state_dict(state["model"])
        self.data.load_state_dict(state["sampler"])


def engine_config(config: TTSConfig) -> EngineConfig:
    return EngineConfig(
        max_steps=config.max_steps,
        seed=config.seed,
        device=config.device,
        lr=config.lr,
        betas=(0.9, 0.98),
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        grad_clip=config.grad_clip,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        keep_last=config.keep_last,
        keep_best=False,
        tensorboard=False,
        label="train tts",
    )


def train_tts(data_dir: str | Path, run_dir: str | Path, config: TTSConfig, resume: bool = False) -> Path:
    """Train (or with ``resume`` continue) a TTS model on ``data_dir`` into ``run_dir``; returns the last checkpoint."""
    data_dir, run_dir = Path(data_dir), Path(run_dir)
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise ConfigError(
            "the run dir already has checkpoints; pass --resume to continue it or pick a new dir", run_dir
        )
    if existing is not None:
        description = TTSDescription.load(run_dir)
        if to_dict(description.config) | {"max_steps": 0} != to_dict(config) | {"max_steps": 0}:
            raise ConfigError("cannot resume with other settings than the run's (only max_steps may change)", run_dir)
        description.config = config
        model = build_model(description)
    else:
        if resume:
            logger.info("resume: no checkpoint in %s yet; starting from step 0", run_dir)
        description, model = describe(data_dir, config)
    check_training_data(data_dir, description, model)
    run_dir.mkdir(parents=True, exist_ok=True)
    description.save(run_dir)
    engine = Engine(TTSUnit(description, model, data_dir), engine_config(config), run_dir, resume=existing is not None)
    try:
        result = engine.train()
    finally:
        engine.close()
    return Path(result.checkpoint)


def load_tts(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[TTSDescription, TTSModel]:
    """A trained TTS run (its newest checkpoint, or ``checkpoint``) in eval mode on the CPU."""
    description = TTSDescription.load(run_dir)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if path is None:
        raise DataError("no checkpoint (ckpt-*.pt) in this TTS run dir", run_dir)
    state = read_checkpoint(path, keys=("kind", "model"))
    if state.get("kind") != "tts":
        raise DataError("not a TTS checkpoint", path)
    model = build_model(description)
    model.load_state_dict(state["model"])
    return description, model.eval()


@torch.no_grad()
def synthesize_mels(
    model: TTSModel,
    description: TTSDescription,
    texts: Sequence[str],
    speakers: Sequence[str],
    *,
    max_frames: int | None = None,
    where: Sequence[tuple] | None = None,
    run_dir: str | Path | None = None,
) -> list[torch.Tensor]:
    """Log-mel (F, n_mels) of each text in the voice of the matching speaker (names of the run's table)."""
    rows = torch.tensor([speaker_index(description.speakers, s, run_dir) for s in speakers])
    tokens, lengths = text_tokens(model.backbone.tokenizer, texts, where)
    device = next(model.parameters()).device
    mels, frames = model.generate(tokens.to(device), lengths.to(device), rows.to(device), max_frames)
    return [mels[i, : int(frames[i])].cpu() for i in range(len(texts))]
