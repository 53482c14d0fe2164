"""The SpeechT5 bundle: shared encoder + shared decoder + pre/post-nets, and loading it from a checkpoint.

:class:`SpeechT5Backbone` is everything but the encoder: the shared :class:`TransformerDecoder`,
the shared text embedding (text encoder pre-net, text decoder pre-net and tied output
projection), the speech-decoder pre/post-nets, the log-mel target, an optional speaker table and
the tokenizer (carried in the state dict). The encoder stays a regular audiossl encoder, so a
speecht5 pretraining checkpoint holds ``encoder.*`` (what :func:`audiossl.models.load_pretrained`,
extract and every plugin read) beside ``backbone.*``.

:func:`load_speecht5` rebuilds the whole model (:class:`SpeechT5Pretrained`) for fine-tuning:

.. code-block:: python

    model = load_speecht5("exp/speecht5")          # run dir or checkpoint
    out = model.encode_speech(waveforms, lengths)  # EncoderOutput
    logits = model.backbone.text_logits(tokens_in, token_lengths, out.last, out.lengths)  # ASR / ST
    hyps = beam_search(model.backbone, out.last[0, : out.lengths[0]], sos=BOS, eos=EOS)
    mel = model.backbone.decode_speech(mel_in, steps, out.last, out.lengths, speaker)   # TTS / VC
    text_out = model.encode_text(tokens, lengths)  # the text encoder path (TTS input)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiossl.config import from_dict
from audiossl.data.text import BOS, EOS, PAD, Tokenizer, tokenizer_from_state
from audiossl.encoders import Encoder, EncoderOutput
from audiossl.errors import ConfigError, DataError
from audiossl.models.inputs import InputPipeline
from audiossl.models.pretrained import pretrained_from_state, read_model_state
from audiossl.models.speecht5.nets import (
    LogMelTarget,
    MelOutput,
    MelTargetConfig,
    SpeechDecoderPostnet,
    SpeechDecoderPrenet,
    SpeechPrenetConfig,
    TextEncoderPrenet,
    decoder_mel_inputs,
)
from audiossl.nn.decoder import DecoderCache, DecoderConfig, TiedTextHead, TransformerDecoder, tied_embedding
from audiossl.nn.masking import lengths_to_padding_mask


@dataclass(kw_only=True)
class SpeechT5BackboneConfig:
    """The decoder side of SpeechT5 (its width is the encoder's: the text embedding is shared by both)."""

    decoder_layers: int = 6
    """Decoder blocks (SpeechT5 base: 6)."""

    decoder_heads: int | None = None
    """Decoder attention heads; None = the most of 12, 8, 6, 4, 3, 2, 1 that divides the width into heads of >= 32."""

    decoder_ffn_dim: int | None = None
    """Decoder feed-forward width; None = 4 x the width."""

    dropout: float = 0.1
    """Decoder dropout."""

    max_length: int = 1024
    """Most decoder positions: text tokens + 2, or mel frames / reduction + 1."""

    speech: SpeechPrenetConfig = field(default_factory=SpeechPrenetConfig)
    """Speech-decoder pre-net and post-net."""

    mel: MelTargetConfig = field(default_factory=MelTargetConfig)
    """The log-mel frames the speech decoder predicts."""

    num_speakers: int = 0
    """Rows of a learned speaker table (0 = none); x-vectors of width ``speech.speaker_dim`` work either way."""


def default_heads(dim: int) -> int:
    """The most of 12, 8, 6, 4, 3, 2, 1 heads dividing ``dim`` into heads of at least 32 channels (else 1)."""
    return next((h for h in (12, 8, 6, 4, 3, 2) if dim % h == 0 and dim // h >= 32), 1)


class SpeechT5Backbone(TiedTextHead, nn.Module):
    """Decoder, shared text embedding, speech pre/post-nets for an encoder of width ``dim``.

    ``tokenizer`` None builds a speech-only backbone (no text embedding).
    """

    def __init__(self, config: SpeechT5BackboneConfig, dim: int, tokenizer: Tokenizer | None = None):
        super().__init__()
        self.config, self.dim, self.tokenizer = config, dim, tokenizer
        decoder_config = DecoderConfig(
            dim=dim,
            num_layers=config.decoder_layers,
            num_heads=config.decoder_heads or default_heads(dim),
            ffn_dim=config.decoder_ffn_dim or 4 * dim,
            dropout=config.dropout,
            max_length=config.max_length,
        )
        self.decoder = TransformerDecoder(decoder_config)
        if tokenizer is not None:
            self.embedding = tied_embedding(tokenizer.vocab_size, dim, PAD)
            self.output_bias = nn.Parameter(torch.zeros(tokenizer.vocab_size))
            self.text_prenet = TextEncoderPrenet(dim)
        self.mel = LogMelTarget(config.mel)
        self.speech_prenet = SpeechDecoderPrenet(config.mel.n_mels, dim, config.speech)
        self.speech_postnet = SpeechDecoderPostnet(dim, config.mel.n_mels, config.speech)
        self.speakers = nn.Embedding(config.num_speakers, config.speech.speaker_dim) if config.num_speakers else None

    @property
    def has_text(self) -> bool:
        """Whether this backbone has a text embedding (a tokenizer)."""
        return self.tokenizer is not None

    @property
    def max_text_tokens(self) -> int:
        """Longest token sequence the decoder takes (bos/eos added)."""
        return self.config.max_length - 2

    # -- the tokenizer travels in the state dict ------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {"tokenizer": None if self.tokenizer is None else self.tokenizer.state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        saved = state.get("tokenizer")
        current = None if self.tokenizer is None else self.tokenizer.state()
        if saved != current:
            raise ConfigError(
                "the checkpoint's tokenizer differs from this run's (another --text corpus or tokenizer setting); "
                "use the same text settings to resume"
            )

    # -- text ------------------------------------------------------------------------------------

    def encode_text(self, encoder: Encoder, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """The shared encoder over token ids (B, S) through the text pre-net."""
        if not self.has_text:
            raise ConfigError("this speecht5 model has no text modality (pretrained without --text)")
        return encoder.contextualize(self.text_prenet(self.embedding, tokens, lengths))

    # -- speech ----------------------------------------------------------------------------------

    def speaker_vectors(self, speakers: torch.Tensor | None) -> torch.Tensor | None:
        """(B,) long table rows or (B, speaker_dim) external embeddings (x-vectors) -> (B, speaker_dim) or None."""
        if speakers is None or speakers.dim() == 2:
            return speakers
        if self.speakers is None:
            raise ConfigError("speaker ids need a speaker table: set num_speakers, or pass (B, speaker_dim) vectors")
        return self.speakers(speakers)

    def decode_speech(
        self,
        mels: torch.Tensor,
        frame_lengths: torch.Tensor,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        speakers: torch.Tensor | None = None,
    ) -> MelOutput:
        """Teacher-forced mel prediction of target frames ``mels`` (B, F, n_mels) with ``frame_lengths`` (B,).

        Returns :class:`MelOutput` over ``ceil(F / r) * r`` frames (compare the first F).
        """
        reduction = self.config.speech.reduction
        steps = -(-frame_lengths // reduction)  # ceil
        inputs = self.speech_prenet(decoder_mel_inputs(mels, reduction), self.speaker_vectors(speakers))
        hidden = self.decoder(inputs, steps, memory, memory_lengths)  # (B, U, D)
        return self.speech_postnet(hidden, steps * reduction)

    def speech_step(
        self, frames: torch.Tensor, cache: DecoderCache, speakers: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, DecoderCache]:
        """One step from the previous frame (N, n_mels) -> (r frames (N, r, n_mels), stop logits (N, r), cache)."""
        inputs = self.speech_prenet(frames.unsqueeze(1), self.speaker_vectors(speakers))
        hidden, cache = self.decoder.step(inputs, cache)
        out = self.speech_postnet.frames(hidden[:, -1]).view(frames.shape[0], -1, self.config.mel.n_mels)
        return out, self.speech_postnet.stop(hidden[:, -1]), cache

    @torch.no_grad()
    def generate_speech(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        speakers: torch.Tensor | None = None,
        max_frames: int | None = None,
        threshold: float = 0.5,
        min_frames: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive log-mel for each item until its stop probability passes ``threshold``.

        Returns refined mels (B, F, n_mels) (zero past each length) and frame lengths (B,).
        """
        config = self.config
        reduction, n_mels = config.speech.reduction, config.mel.n_mels
        limit = max_frames or (config.max_length - 1) * reduction
        batch = memory.shape[0]
        cache = self.decoder.init_cache(memory, memory_lengths)
        frame = memory.new_zeros(batch, n_mels)
        chunks, lengths = [], torch.full((batch,), -1, dtype=torch.long, device=memory.device)
        produced = 0
        while produced < limit and bool((lengths < 0).any()):
            frames, stop, cache = self.speech_step(frame, cache, speakers)
            chunks.append(frames)
            stopped = (torch.sigmoid(stop) > threshold) & (
                produced + torch.arange(reduction, device=stop.device) >= min_frames
            )
            for item in range(batch):
                if lengths[item] < 0 and bool(stopped[item].any()):
                    lengths[item] = produced + int(stopped[item].nonzero()[0]) + 1
            produced += reduction
            frame = frames[:, -1]
        lengths = torch.where(lengths < 0, torch.full_like(lengths, produced), lengths)
        before = torch.cat(chunks, dim=1)  # (B, F, n_mels)
        after = before + self.speech_postnet.refine(before, lengths)
        padding = lengths_to_padding_mask(lengths, after.shape[1])
        return after.masked_fill(padding.unsqueeze(-1), 0.0), lengths


class SpeechT5Pretrained(nn.Module):
    """A pretrained SpeechT5: input pipeline + shared encoder + backbone (decoder, pre/post-nets, tokenizer)."""

    def __init__(self, inputs: InputPipeline, encoder: Encoder, backbone: SpeechT5Backbone, config: Any):
        super().__init__()
        self.inputs, self.encoder, self.backbone, self.config = inputs, encoder, backbone, config

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.backbone.tokenizer

    def encode_speech(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Waveforms (B, T) -> the encoder's output, through the pretraining input pipeline."""
        features, feature_lengths = self.inputs(waveforms, lengths)
        return self.encoder(features, feature_lengths)

    def encode_text(self, tokens: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Token ids (B, S) -> the shared encoder's output through the text pre-net."""
        return self.backbone.encode_text(self.encoder, tokens, lengths)


def backbone_config(objective_config: dict[str, Any]) -> SpeechT5BackboneConfig:
    """The backbone section of a speecht5 objective config (a plain dict)."""
    return from_dict(SpeechT5BackboneConfig, dict(objective_config.get("backbone") or {}))


def load_speecht5(path: str | Path) -> SpeechT5Pretrained:
    """The SpeechT5 model of a ``speecht5`` pretraining checkpoint or run dir, in eval mode on the CPU."""
    source, state = read_model_state(path)
    objective = (state.get("config") or {}).get("objective") or {}
    if objective.get("name") != "speecht5":
        raise DataError(f"not a speecht5 pretraining checkpoint (objective {objective.get('name')!r})", source)
    encoder_bundle = pretrained_from_state(state)
    extra = state["model"].get("backbone._extra_state") or {}
    tokenizer = None if extra.get("tokenizer") is None else tokenizer_from_state(extra["tokenizer"])
    backbone = SpeechT5Backbone(backbone_config(objective.get("config") or {}), encoder_bundle.encoder.dim, tokenizer)
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)})
    model = SpeechT5Pretrained(encoder_bundle.inputs, encoder_bundle.encoder, backbone, encoder_bundle.config)
    return model.eval()


__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SpeechT5Backbone",
    "SpeechT5BackboneConfig",
    "SpeechT5Pretrained",
    "backbone_config",
    "load_speecht5",
]
