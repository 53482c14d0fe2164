"""SpeechT5's shared Transformer encoder (Ao et al. 2022) as a regular audiossl encoder.

The speech-encoder pre-net is the shared :class:`~audiossl.encoders.embed.TokenEmbedding`: the
wav2vec 2.0 waveform CNN with a convolutional positional embedding by default (SpeechT5's
choice), or stacked fbank frames. Pre-norm Transformer blocks follow, whose self-attention adds
a learned *relative position bias*: one scalar per head and clipped distance ``j - i`` in
``[-max_distance, max_distance]``, shared by every block (SpeechT5 adds relative position
information in its encoder with a maximum distance of 160; the bias form is T5's, Raffel et al.
2020). The bias depends only on distances, never on the padded length, so a padded batch equals
each item alone.

Text reaches the same blocks through :meth:`Encoder.contextualize`: the text pre-net of
:mod:`audiossl.models.speecht5` builds the :class:`~audiossl.encoders.embed.EmbeddedTokens`
(shared embedding + positions), so one encoder serves both modalities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.encoders.base import Encoder, EncoderOutput, register_encoder
from audiossl.encoders.embed import EmbeddedTokens, InputConfig, TokenEmbedding
from audiossl.errors import ConfigError
from audiossl.nn.attention import FeedForward


def _default_input() -> InputConfig:
    # The wav2vec 2.0 CNN (20 ms tokens) with its per-frame layer norm, conv positions.
    return InputConfig(kind="waveform")


@dataclass(kw_only=True)
class SpeechT5EncoderConfig:
    """The SpeechT5 encoder. Presets: :func:`speecht5_tiny`, :func:`speecht5_base`."""

    input: InputConfig = field(default_factory=_default_input)
    """Speech pre-net: waveform CNN tokens (default) or stacked fbank frames."""

    dim: int = 768
    """Hidden size D."""

    num_layers: int = 12
    """Transformer blocks."""

    num_heads: int = 12
    """Attention heads; must divide ``dim``."""

    ffn_dim: int = 3072
    """Feed-forward hidden size."""

    max_distance: int = 160
    """Relative distances are clipped to [-max_distance, max_distance] (one learned bias per head and distance)."""

    dropout: float = 0.1
    """Dropout after attention and in the feed-forward network."""

    attention_dropout: float = 0.1
    """Dropout on the attention weights."""

    norm_eps: float = 1e-5
    """Epsilon of the layer norms."""

    def __post_init__(self) -> None:
        if self.dim % self.num_heads != 0:
            raise ConfigError(f"speecht5 encoder dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.max_distance < 1:
            raise ConfigError(f"speecht5 encoder max_distance must be >= 1, got {self.max_distance}")


def speecht5_base() -> SpeechT5EncoderConfig:
    """SpeechT5 base: 768 wide, 12 blocks, 12 heads, FFN 3072 (the 6-block decoder lives in the model bundle)."""
    return SpeechT5EncoderConfig()


def speecht5_small() -> SpeechT5EncoderConfig:
    """384 wide, 12 blocks, 6 heads, FFN 1536: between tiny and base, comparable to the other families' small."""
    return SpeechT5EncoderConfig(dim=384, num_layers=12, num_heads=6, ffn_dim=1536)


def speecht5_tiny() -> SpeechT5EncoderConfig:
    """192 wide, 6 blocks, 4 heads, FFN 768: for CPU experiments."""
    return SpeechT5EncoderConfig(dim=192, num_layers=6, num_heads=4, ffn_dim=768)


class RelativePositionBias(nn.Module):
    """Learned scalar bias per head and clipped relative distance -> (1, H, S, S)."""

    def __init__(self, num_heads: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Embedding(2 * max_distance + 1, num_heads)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, length: int, device: torch.device) -> torch.Tensor:
        positions = torch.arange(length, device=device)
        distance = (positions.unsqueeze(0) - positions.unsqueeze(1)).clamp(-self.max_distance, self.max_distance)
        return self.table(distance + self.max_distance).permute(2, 0, 1).unsqueeze(0)  # (1, H, S, S)


class BiasedSelfAttention(nn.Module):
    """Multi-head self-attention with an additive float mask (relative bias + -inf at padding keys)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x`` (B, S, D), ``bias`` (B or 1, H, S, S) added to the attention logits."""
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, S, Dh)
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias.to(query.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(out.transpose(1, 2).reshape(batch, length, dim))


class SpeechT5Block(nn.Module):
    """Pre-norm block: ``x + attn(norm(x), bias)``, ``x + ffn(norm(x))``; padding rows zeroed."""

    def __init__(self, config: SpeechT5EncoderConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.attention = BiasedSelfAttention(config.dim, config.num_heads, config.attention_dropout)
        self.ffn_norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.ffn = FeedForward(config.dim, config.ffn_dim, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), bias))
        x = x + self.ffn(self.ffn_norm(x))
        return x.masked_fill(padding_mask.unsqueeze(-1), 0.0)


@register_encoder(
    "speecht5",
    SpeechT5EncoderConfig,
    presets={"tiny": speecht5_tiny, "small": speecht5_small, "base": speecht5_base},
    description="SpeechT5 shared encoder: Transformer with relative position bias (speech or text pre-net)",
)
class SpeechT5Encoder(Encoder):
    """Speech pre-net + Transformer blocks with relative position bias; ``forward`` returns every block."""

    def __init__(self, config: SpeechT5EncoderConfig):
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.num_layers = config.num_layers
        self.embedding = TokenEmbedding(config.input, config.dim)
        self.relative_bias = RelativePositionBias(config.num_heads, config.max_distance)
        self.blocks = nn.ModuleList(SpeechT5Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        """The blocks over positioned tokens (speech from the pre-net, or text from the text pre-net)."""
        x = embedded.tokens  # (B, S, D)
        padding_mask = embedded.padding_mask  # (B, S)
        bias = self.relative_bias(x.shape[1], x.device)  # (1, H, S, S)
        if bool(padding_mask.any()):
            bias = bias.masked_fill(padding_mask[:, None, None, :], float("-inf"))  # (B, H, S, S)
        layers = []
        for block in self.blocks:
            x = self.run_block(block, x, bias, padding_mask)
            layers.append(x)
        return self.output(self.norm(x), layers, embedded.lengths, padding_mask, embedded)
