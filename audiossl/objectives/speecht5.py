"""``speecht5``: joint speech/text pretraining of a shared encoder-decoder (Ao et al. 2022, SpeechT5).

Two kinds of batches, alternated by the training unit (``speech_batches`` : ``text_batches``):

- **Speech** (every data batch): spans of input tokens are masked (HuBERT's recipe) and the
  encoder's outputs at masked frames predict their k-means cluster labels (cosine similarity
  to one learned embedding per cluster / temperature, cross-entropy; labels from
  ``audiossl kmeans label`` via ``batch.targets["frames"]``, as :mod:`~audiossl.objectives.hubert`).
  The decoder, cross-attending to the encoder output, reconstructs the utterance's log-mel
  frames with teacher forcing: L1 on the post-net's frames before and after the refiner, binary
  cross-entropy on the stop logit (positive weight ``stop_pos_weight``: one stop frame per
  utterance).
- **Text** (sentences of the ``--text`` corpus): BART text infilling
  (:func:`audiossl.data.text.infill`: 30% of the tokens in Poisson(3.5) spans, one mask each)
  through the text pre-net and the same encoder; the decoder reconstructs the original sentence
  (cross-entropy, pad ignored).
- **Cross-modal vector quantization**, both kinds: the encoder outputs go through one shared
  Gumbel codebook (:class:`~audiossl.objectives.quantizer.GumbelVectorQuantizer`, codes as wide as
  the encoder); a random ``vq_ratio`` (10%) of the vectors handed to the decoder's
  cross-attention are replaced by their codes. wav2vec 2.0's diversity loss keeps the codebook in
  use; ``code_perplexity`` is logged, and the trainer warns below ``run.collapse_perplexity``.

``total = cluster_weight * CE_cluster + mel_weight * L1 + stop_weight * BCE + diversity_weight * diversity``
(speech) or ``text_weight * CE_text + diversity_weight * diversity`` (text).

Without ``text`` the same model is pretrained on speech alone (the baseline of the paper's
ablation). The decoder side (:class:`~audiossl.models.speecht5.SpeechT5Backbone`, with the
tokenizer) is saved under ``backbone.*``; :func:`audiossl.models.speecht5.load_speecht5` loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.data.dataset import Batch
from audiossl.data.targets import IGNORE, FrameLabelSpec, recorded_clusters
from audiossl.data.text import (
    PAD,
    InfillConfig,
    build_tokenizer,
    denoising_batch,
    encode_corpus,
    read_text_corpus,
)
from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.models.speecht5 import SpeechT5Backbone, SpeechT5BackboneConfig
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import (
    LossOutput,
    Objective,
    pipeline_features,
    register_objective,
    scalar_metrics,
    trim_to_longest,
)
from audiossl.objectives.masking import MaskConfig, sample_mask
from audiossl.objectives.quantizer import GumbelVectorQuantizer, QuantizerConfig


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="span", start_prob=0.08, span_length=10, min_spans=2)


def _default_infill() -> InfillConfig:
    return InfillConfig(ratio=0.3, poisson_lambda=3.5, random_ratio=0.1)


@dataclass(kw_only=True)
class SpeechT5Config:
    """SpeechT5 joint pretraining (defaults: the paper's recipe where it gives one)."""

    labels: str | list[str] | None = None
    """Label dir(s) of ``audiossl kmeans label`` for the masked cluster prediction; required to train."""

    num_clusters: int | None = None
    """Clusters K; None = the ``n_clusters`` recorded in the (first) label dir."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Span masking of the speech tokens (HuBERT's: p = 0.08 starts of 10-token spans, at least 2)."""

    code_dim: int = 256
    """Width of the projection compared to the cluster embeddings by cosine similarity."""

    logit_temperature: float = 0.1
    """Cosine similarities are divided by it."""

    label_tolerance: int = 1
    """Frames by which an utterance's labels may differ from its encoder tokens."""

    cluster_weight: float = 1.0
    """Weight of the masked cluster cross-entropy."""

    mel_weight: float = 1.0
    """Weight of the L1 log-mel reconstruction (before + after the refiner)."""

    stop_weight: float = 1.0
    """Weight of the stop-token binary cross-entropy."""

    stop_pos_weight: float = 5.0
    """Positive-class weight of the stop BCE (one stop frame per utterance)."""

    backbone: SpeechT5BackboneConfig = field(default_factory=SpeechT5BackboneConfig)
    """Decoder and pre/post-nets."""

    text: str | None = None
    """Plain text corpus (one sentence a line) for the text denoising batches; None = speech only.
    ``audiossl pretrain --text FILE`` sets it."""

    tokenizer: Literal["char", "sentencepiece"] = "char"
    """Text units: the corpus's characters, or a sentencepiece unigram model trained on the corpus."""

    vocab_size: int = 1000
    """Most sentencepiece pieces (specials included; a small corpus gets fewer)."""

    text_batch_size: int = 16
    """Sentences per text batch (per process)."""

    speech_batches: int = 1
    """Speech batches per alternation cycle."""

    text_batches: int = 1
    """Text batches per alternation cycle (after the speech batches)."""

    infill: InfillConfig = field(default_factory=_default_infill)
    """BART text infilling of the text batches (30%, Poisson(3.5), 10% random tokens)."""

    text_weight: float = 1.0
    """Weight of the text reconstruction cross-entropy."""

    vq_groups: int = 2
    """Codebook groups of the shared quantizer (SpeechT5: 2 codebooks)."""

    vq_entries: int = 100
    """Entries per group (SpeechT5: 100)."""

    vq_ratio: float = 0.1
    """Fraction of the encoder vectors replaced by their codes before the decoder's cross-attention."""

    vq_max_temperature: float = 2.0
    """Gumbel temperature at step 0."""

    vq_min_temperature: float = 0.5
    """Floor of the Gumbel temperature."""

    vq_temperature_decay: float = 0.999995
    """Gumbel temperature decay per optimizer step."""

    diversity_weight: float = 0.1
    """Weight of the codebook diversity loss."""

    def __post_init__(self) -> None:
        if self.num_clusters is not None and self.num_clusters < 2:
            raise ConfigError(f"speecht5 num_clusters must be >= 2, got {self.num_clusters}")
        if self.speech_batches < 1 or self.text_batches < 0:
            raise ConfigError("speecht5 needs speech_batches >= 1 and text_batches >= 0")
        if not 0.0 <= self.vq_ratio <= 1.0:
            raise ConfigError(f"speecht5 vq_ratio must be in [0, 1], got {self.vq_ratio}")
        if self.logit_temperature <= 0 or self.code_dim < 1:
            raise ConfigError("speecht5 logit_temperature must be > 0 and code_dim >= 1")

    @property
    def label_dirs(self) -> list[str]:
        """The label dirs as a list (empty when none is set)."""
        if self.labels is None:
            return []
        return [self.labels] if isinstance(self.labels, str) else list(self.labels)


@dataclass
class SpeechT5Inputs:
    """One batch: speech fields (a data batch) or text fields (a denoising batch); the others are None."""

    features: torch.Tensor | None = None
    """(B, F, C) features or (B, T) waveforms for the encoder."""

    lengths: torch.Tensor | None = None
    """(B,) valid frames (samples) of ``features``."""

    targets: torch.Tensor | None = None
    """(B, S) long cluster labels of the speech tokens, IGNORE where not scored."""

    mels: torch.Tensor | None = None
    """(B, F, n_mels) log-mel frames the decoder reconstructs."""

    mel_lengths: torch.Tensor | None = None
    """(B,) valid mel frames."""

    source: torch.Tensor | None = None
    """(B, S) long infilled token ids for the encoder."""

    source_lengths: torch.Tensor | None = None
    """(B,) valid source tokens."""

    decoder_input: torch.Tensor | None = None
    """(B, U) long bos + original tokens."""

    text_target: torch.Tensor | None = None
    """(B, U) long original tokens + eos, PAD-padded."""

    text_lengths: torch.Tensor | None = None
    """(B,) valid decoder positions."""

    def to(self, device: torch.device | str) -> SpeechT5Inputs:
        """The same inputs on ``device``."""
        moved = {
            name: None if value is None else value.to(device, non_blocking=True) for name, value in vars(self).items()
        }
        return SpeechT5Inputs(**moved)


@register_objective("speecht5", SpeechT5Config, "SpeechT5: masked clusters + mel reconstruction, BART text, shared VQ")
class SpeechT5Objective(Objective):
    """SpeechT5 on any encoder with frame tokens; the decoder side lives in ``self.backbone``."""

    inputs_type = SpeechT5Inputs
    target_heads = ("codewords",)

    def __init__(self, encoder: Encoder, config: SpeechT5Config):
        super().__init__(encoder)
        self.config = config
        if encoder.freq_patches != 1:
            raise ConfigError(
                f"speecht5 predicts one label per time step, but the encoder has {encoder.freq_patches} frequency "
                "patches per step: use frame or waveform tokens (encoder.overrides.input.kind)"
            )
        num_clusters = config.num_clusters
        if num_clusters is None and config.label_dirs:
            num_clusters = recorded_clusters(config.label_dirs[0])
        self.num_clusters = num_clusters
        tokenizer, self.sentences = None, []
        if config.text is not None:
            sentences = read_text_corpus(config.text)
            tokenizer = build_tokenizer(sentences, config.tokenizer, config.vocab_size)
        self.backbone = SpeechT5Backbone(config.backbone, encoder.dim, tokenizer)
        if tokenizer is not None:
            self.sentences = encode_corpus(sentences, tokenizer, self.backbone.max_text_tokens, config.text)
        if encoder.dim % config.vq_groups != 0:
            raise ConfigError(f"speecht5 vq_groups {config.vq_groups} must divide the encoder width {encoder.dim}")
        self.quantizer = GumbelVectorQuantizer(
            encoder.dim,
            QuantizerConfig(
                groups=config.vq_groups,
                entries=config.vq_entries,
                code_dim=encoder.dim,
                max_temperature=config.vq_max_temperature,
                min_temperature=config.vq_min_temperature,
                temperature_decay=config.vq_temperature_decay,
            ),
        )
        if num_clusters is not None:
            self.projection = nn.Linear(encoder.dim, config.code_dim)
            self.codewords = nn.Parameter(torch.empty(num_clusters, config.code_dim).normal_())  # (K, C)

    # ------------------------------------------------------------------------- data

    @property
    def text_cycle(self) -> tuple[int, int] | None:
        """(speech batches, text batches) per alternation cycle, or None without a text corpus."""
        if not self.sentences or self.config.text_batches == 0:
            return None
        return self.config.speech_batches, self.config.text_batches

    def target_specs(self) -> dict[str, Any]:
        """``frames``: the label dirs' frame labels at the token rate."""
        if not self.config.label_dirs or self.num_clusters is None:
            raise ConfigError("speecht5 needs objective.config.labels (a label dir from `audiossl kmeans label`)")
        return {"frames": FrameLabelSpec(tuple(self.config.label_dirs), self.num_clusters, self.config.label_tolerance)}

    def prepare_batch(
        self, batch: Batch, inputs: nn.Module, generator: torch.Generator | None = None
    ) -> SpeechT5Inputs:
        """A speech batch: features, frame labels, and the log-mel target of the (raw) waveforms."""
        if "frames" not in batch.targets:
            raise ConfigError("speecht5 reads its frame labels from batch.targets['frames'] (objective.config.labels)")
        features, lengths = pipeline_features(batch, inputs, generator)
        mels, mel_lengths = self.backbone.mel(batch.waveforms, batch.lengths)
        return SpeechT5Inputs(features, lengths, batch.targets["frames"], mels, mel_lengths)

    def text_inputs(self, indices: list[int], generator: torch.Generator | None = None) -> SpeechT5Inputs:
        """A text batch of corpus sentences ``indices``, infilled with ``generator`` (on the CPU)."""
        vocab = self.backbone.tokenizer.vocab_size
        text = denoising_batch([self.sentences[i] for i in indices], self.config.infill, vocab, generator)
        return SpeechT5Inputs(
            source=text.source,
            source_lengths=text.source_lengths,
            decoder_input=text.decoder_input,
            text_target=text.target,
            text_lengths=text.target_lengths,
        )

    # ------------------------------------------------------------------------- losses

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Span mask of the speech tokens (B, num_tokens)."""
        return sample_mask(self.config.mask, token_lengths, num_tokens, 1, generator)

    def cross_modal(
        self, hidden: torch.Tensor, valid: torch.Tensor, step: int | None, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Shared codebook: (memory with ``vq_ratio`` of the valid vectors replaced by codes, diversity, metrics)."""
        quantized = self.quantizer(hidden, valid, step, generator)
        draw = torch.rand(valid.shape, generator=generator, device=valid.device)
        replace = (draw < self.config.vq_ratio) & valid  # (B, S)
        memory = torch.where(replace.unsqueeze(-1), quantized.quantized.to(hidden.dtype), hidden)
        diversity = quantized.diversity_loss(self.config.vq_groups, self.config.vq_entries)
        metrics = {
            "code_perplexity": quantized.code_perplexity,
            "softmax_perplexity": quantized.perplexity,
            "temperature": quantized.temperature,
            "replaced_fraction": replace.sum() / valid.sum().clamp(min=1),
        }
        return memory, diversity, metrics

    def speech_loss(self, inputs: SpeechT5Inputs, step: int | None, generator: torch.Generator | None) -> LossOutput:
        config = self.config
        if inputs.targets is None or self.num_clusters is None:
            raise ConfigError("speecht5 speech batches need frame targets (objective.config.labels)")
        features = trim_to_longest(inputs.features, inputs.lengths)
        extracted = self.encoder.extract_features(features, inputs.lengths)
        longest = extracted.tokens.shape[1]
        mask = self.sample_mask(extracted.lengths, longest, generator)
        output = self.encoder(features, inputs.lengths, mask=mask, extracted=extracted).without_prefix()
        hidden = output.last  # (B, S, D)
        targets = inputs.targets
        if targets.shape[1] < longest:
            targets = F.pad(targets, (0, longest - targets.shape[1]), value=IGNORE)
        targets = targets[:, :longest].long()
        valid = lengths_to_mask(output.lengths, longest)  # (B, S)
        scored = mask & valid & (targets != IGNORE)
        projected = F.normalize(self.projection(hidden[scored]).float(), dim=-1)  # (N, C)
        logits = projected @ F.normalize(self.codewords.float(), dim=-1).T / config.logit_temperature  # (N, K)
        labels = targets[scored]
        cluster = F.cross_entropy(logits, labels) if labels.numel() else hidden.sum() * 0.0
        memory, diversity, metrics = self.cross_modal(hidden, valid, step, generator)
        mels, mel_lengths = inputs.mels, inputs.mel_lengths
        predicted = self.backbone.decode_speech(mels, mel_lengths, memory, output.lengths)
        frames = mels.shape[1]
        frame_valid = lengths_to_mask(mel_lengths, frames)  # (B, F)
        before, after = predicted.before[:, :frames].float(), predicted.after[:, :frames].float()
        mel_l1 = ((before - mels).abs() + (after - mels).abs())[frame_valid].mean()
        stop_target = (torch.arange(frames, device=mels.device).unsqueeze(0) >= (mel_lengths - 1).unsqueeze(1)).float()
        stop = F.binary_cross_entropy_with_logits(
            predicted.stop_logits[:, :frames].float()[frame_valid],
            stop_target[frame_valid],
            pos_weight=torch.tensor(config.stop_pos_weight, device=mels.device),
        )
        parts = {"cluster": cluster, "mel": mel_l1, "stop": stop, "diversity": diversity}
        total = (
            config.cluster_weight * cluster
            + config.mel_weight * mel_l1
            + config.stop_weight * stop
            + config.diversity_weight * diversity
        )
        metrics["masked_accuracy"] = (
            (logits.argmax(dim=-1) == labels).float().mean() if labels.numel() else hidden.new_zeros(())
        )
        metrics["masked_fraction"] = (mask & valid).sum() / valid.sum().clamp(min=1)
        return LossOutput(total=total, parts=parts, metrics=scalar_metrics(metrics))

    def text_loss(self, inputs: SpeechT5Inputs, step: int | None, generator: torch.Generator | None) -> LossOutput:
        config = self.config
        output = self.backbone.encode_text(self.encoder, inputs.source, inputs.source_lengths)
        valid = lengths_to_mask(output.lengths, output.last.shape[1])
        memory, diversity, metrics = self.cross_modal(output.last, valid, step, generator)
        logits = self.backbone.text_logits(inputs.decoder_input, inputs.text_lengths, memory, output.lengths)
        target = inputs.text_target
        text = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=PAD)
        scored = target != PAD
        metrics["text_accuracy"] = (logits.argmax(dim=-1)[scored] == target[scored]).float().mean()
        total = config.text_weight * text + config.diversity_weight * diversity
        return LossOutput(total=total, parts={"text": text, "diversity": diversity}, metrics=scalar_metrics(metrics))

    def forward(
        self,
        features: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        mels: torch.Tensor | None = None,
        mel_lengths: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        source_lengths: torch.Tensor | None = None,
        decoder_input: torch.Tensor | None = None,
        text_target: torch.Tensor | None = None,
        text_lengths: torch.Tensor | None = None,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """The speech loss for a speech batch (``features`` ...), the text loss for a text batch (``source`` ...)."""
        inputs = SpeechT5Inputs(
            features,
            lengths,
            targets,
            mels,
            mel_lengths,
            source,
            source_lengths,
            decoder_input,
            text_target,
            text_lengths,
        )
        if source is not None:
            return self.text_loss(inputs, step, generator)
        if features is None:
            raise ConfigError("speecht5 needs speech features or a text batch")
        return self.speech_loss(inputs, step, generator)
