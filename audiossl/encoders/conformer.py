"""Conformer encoder (Gulati et al. 2020) as used by w2v-BERT (Chung et al. 2021).

The blocks are torchaudio's :class:`torchaudio.models.conformer.ConformerLayer` (macaron
feed-forward halves, multi-head self-attention, depthwise convolution module, final norm):
we build them through :class:`torchaudio.models.Conformer` and reuse their parameters and
sub-modules. Two things in torchaudio's layer break "a padded batch equals each item alone",
so the layer's forward is driven here, step by step, around those sub-modules:

- The convolution module has no padding mask: the pointwise convolution before the depthwise
  one has a bias, so padding positions are non-zero when the depthwise convolution reads them.
  We zero padding right before the depthwise convolution.
- Its norm after the depthwise convolution is BatchNorm (statistics over the batch and the
  padding in training) or GroupNorm with one group (statistics over the whole padded item).
  We replace it by a per-position LayerNorm over channels (fairseq2's ``norm_type="layer_norm"``
  does the same).

torchaudio's Conformer has no positional encoding (w2v-BERT uses relative attention); here the
shared :class:`~audiossl.encoders.embed.TokenEmbedding` adds a convolutional positional
embedding for frame and waveform tokens, and the depthwise convolutions add relative context.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torchaudio
from torch import nn

from audiossl.encoders.base import Encoder, EncoderOutput, register_encoder
from audiossl.encoders.embed import EmbeddedTokens, InputConfig, TokenEmbedding


def _default_input() -> InputConfig:
    # w2v-BERT 2.0 style: two stacked fbank frames per token (20 ms at a 10 ms hop).
    return InputConfig(kind="frame", frame_stack=2)


@dataclass(kw_only=True)
class ConformerConfig:
    """A Conformer encoder. Presets: :func:`conformer_tiny`, :func:`conformer_small`, :func:`conformer_base`."""

    input: InputConfig = field(default_factory=_default_input)
    """Tokens (stacked frames by default) and their positions."""

    dim: int = 512
    """Hidden size D."""

    num_layers: int = 14
    """Number of Conformer blocks."""

    num_heads: int = 8
    """Attention heads; must divide ``dim``."""

    ffn_dim: int = 2048
    """Hidden size of each of the two macaron feed-forward networks."""

    conv_kernel: int = 31
    """Kernel width of the depthwise convolution (odd, for "same" padding)."""

    convolution_first: bool = False
    """Apply the convolution module before self-attention (torchaudio option)."""

    dropout: float = 0.0
    """Dropout in the feed-forward, attention and convolution modules."""


def conformer_base() -> ConformerConfig:
    """512 wide, 14 blocks, 8 heads, FFN 2048 (about 87 M parameters, AST-Base's size)."""
    return ConformerConfig(dim=512, num_layers=14, num_heads=8, ffn_dim=2048)


def conformer_small() -> ConformerConfig:
    """256 wide, 14 blocks, 4 heads, FFN 1024 (about 22 M parameters, AST-Small's size)."""
    config = conformer_base()
    config.dim, config.num_heads, config.ffn_dim = 256, 4, 1024
    return config


def conformer_tiny() -> ConformerConfig:
    """144 wide, 12 blocks, 4 heads, FFN 576 (about 6 M parameters, AST-Tiny's size)."""
    config = conformer_base()
    config.dim, config.num_layers, config.num_heads, config.ffn_dim = 144, 12, 4, 576
    return config


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, T) tensor: per position, so padding cannot leak."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _convolution(layer: nn.Module, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """torchaudio's convolution module on (B, S, D), with padding zeroed before the depthwise conv."""
    module = layer.conv_module
    pointwise1, glu, depthwise, norm, activation, pointwise2, dropout = module.sequential
    y = glu(pointwise1(module.layer_norm(x).transpose(1, 2)))  # (B, D, S)
    y = y.masked_fill(padding_mask.unsqueeze(1), 0.0)
    y = dropout(pointwise2(activation(norm(depthwise(y)))))  # (B, D, S)
    return x + y.transpose(1, 2)


def _conformer_layer(
    layer: nn.Module, x: torch.Tensor, padding_mask: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> torch.Tensor:
    """One torchaudio ConformerLayer on batch-first (B, S, D), padding-invariant (see module doc)."""
    x = x + 0.5 * layer.ffn1(x)
    if layer.convolution_first:
        x = _convolution(layer, x, padding_mask)
    query = layer.self_attn_layer_norm(x).transpose(0, 1)  # (S, B, D): torchaudio's MHA is time-first
    attended, _ = layer.self_attn(query, query, query, key_padding_mask=key_padding_mask, need_weights=False)
    x = x + layer.self_attn_dropout(attended.transpose(0, 1))
    if not layer.convolution_first:
        x = _convolution(layer, x, padding_mask)
    x = x + 0.5 * layer.ffn2(x)
    x = layer.final_layer_norm(x)
    return x.masked_fill(padding_mask.unsqueeze(-1), 0.0)


@register_encoder(
    "conformer",
    ConformerConfig,
    presets={"tiny": conformer_tiny, "small": conformer_small, "base": conformer_base},
    description="Conformer (torchaudio blocks) over frames or waveform features",
)
class ConformerEncoder(Encoder):
    """Conformer over shared input tokens; ``forward`` returns every block's output."""

    def __init__(self, config: ConformerConfig):
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.num_layers = config.num_layers
        self.embedding = TokenEmbedding(config.input, config.dim)
        conformer = torchaudio.models.Conformer(
            input_dim=config.dim,
            num_heads=config.num_heads,
            ffn_dim=config.ffn_dim,
            num_layers=config.num_layers,
            depthwise_conv_kernel_size=config.conv_kernel,
            dropout=config.dropout,
            convolution_first=config.convolution_first,
        )
        for layer in conformer.conformer_layers:
            layer.conv_module.sequential[3] = _ChannelLayerNorm(config.dim)
            layer.forward = functools.partial(_conformer_layer, layer)  # called as a module: FSDP/compile hooks run
        self.layers = conformer.conformer_layers

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        """The Conformer blocks (each ends with its own layer norm, so the last block's output is final)."""
        x = embedded.tokens  # (B, S, D)
        padding_mask = embedded.padding_mask  # (B, S)
        key_padding_mask = padding_mask if bool(padding_mask.any()) else None
        layers = []
        for layer in self.layers:
            x = self.run_block(layer, x, padding_mask, key_padding_mask)
            layers.append(x)
        return self.output(x, layers, embedded.lengths, padding_mask, embedded)


def create_conformer(config: ConformerConfig) -> ConformerEncoder:
    """Build a Conformer encoder from its config."""
    return ConformerEncoder(config)
