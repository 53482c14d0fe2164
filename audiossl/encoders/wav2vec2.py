"""The wav2vec 2.0 / HuBERT / WavLM encoder family, in audiossl's own modules.

One architecture covers the three published model lines (Baevski et al. 2020; Hsu et al. 2021;
Chen et al. 2022), so their checkpoints convert into it (:mod:`audiossl.interop.convert`) and any
audiossl objective can train them further:

- **Conv feature extractor**: the shared :class:`~audiossl.encoders.embed.TokenEmbedding`'s
  waveform CNN (:mod:`audiossl.audio.cnn`) in either normalisation: ``layer_norm`` after every
  convolution (large models) or ``group_norm`` after the first one only (base models). The group
  norm normalises each channel over time; here it counts only the item's valid frames
  (:class:`LengthAwareGroupNormBlock`), so a padded batch equals each item alone and each item
  gets exactly what the published model gives it alone.
- **Feature projection**: layer norm over the CNN channels (optional: ``feature_norm``), then a
  linear layer to the model width; the learned mask embedding replaces masked frames after it.
- **Convolutional positional embedding**: a weight-normalised grouped convolution,
  ``x + GELU(conv(x))`` (:class:`~audiossl.nn.positional.ConvPositionalEmbedding`).
- **Transformer**: post-LN blocks with a layer norm before the first block (wav2vec 2.0 base,
  HuBERT base, WavLM base) or pre-LN blocks with a final layer norm (``layer_norm_first``: the
  large models).
- **Gated relative position bias** (WavLM, ``relative_position_bias``): one learned scalar per
  head and bucketed distance (T5-style log buckets), computed once per pass and added to every
  block's attention logits, scaled per query by a gate computed from the block's attention input.

Layer outputs: ``layers[i]`` is block ``i``'s output, ``last`` is the final output (after the
final norm for pre-LN, ``layers[-1]`` for post-LN), padding zeroed everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.audio.cnn import ConvBlock, conv_output_lengths
from audiossl.encoders.base import Encoder, EncoderOutput, register_encoder
from audiossl.encoders.embed import EmbeddedTokens, InputConfig, TokenEmbedding
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


def _cnn_layers(channels: int) -> list[tuple[int, int, int]]:
    """The wav2vec 2.0 CNN: (channels, kernel, stride) of its seven convolutions (20 ms hop at 16 kHz)."""
    return [(channels, 10, 5)] + [(channels, 3, 2)] * 4 + [(channels, 2, 2)] * 2


def _waveform_input(
    channels: int = 512, mode: str = "group_norm", conv_bias: bool = False, normalize: bool = False
) -> InputConfig:
    options = {"conv_layers": _cnn_layers(channels), "mode": mode, "conv_bias": conv_bias}
    if normalize:
        options["normalize_waveform"] = True
    return InputConfig(
        kind="waveform", frontend="wav2vec2_cnn", frontend_options=options, conv_pos_kernel=128, conv_pos_groups=16
    )


@dataclass(kw_only=True)
class Wav2Vec2EncoderConfig:
    """A wav2vec 2.0-family encoder. Presets: tiny, small, base (wav2vec2/HuBERT base), large, wavlm-base."""

    input: InputConfig = field(default_factory=_waveform_input)
    """Tokens: the waveform CNN (``frontend_options``: its layers, ``mode`` group_norm/layer_norm,
    ``conv_bias``, ``normalize_waveform``) and the convolutional positions (``conv_pos_kernel``,
    ``conv_pos_groups``). Spectrogram frames or patches work too, as for every family."""

    dim: int = 768
    """Hidden size D."""

    num_layers: int = 12
    """Transformer blocks."""

    num_heads: int = 12
    """Attention heads; must divide ``dim``."""

    ffn_dim: int = 3072
    """Feed-forward hidden size."""

    layer_norm_first: bool = False
    """Pre-LN blocks with a final layer norm (large models, ``do_stable_layer_norm``); False: post-LN
    blocks with a layer norm before the first block (base models)."""

    feature_norm: bool = True
    """Layer norm over the CNN channels before the projection (HuBERT's ``feat_proj_layer_norm``)."""

    relative_position_bias: bool = False
    """WavLM's gated relative position bias in every block's attention."""

    num_buckets: int = 320
    """Relative position buckets (both directions together), with ``relative_position_bias``."""

    max_distance: int = 800
    """Distance (tokens) at which the logarithmic buckets end, with ``relative_position_bias``."""

    activation: Literal["gelu", "relu"] = "gelu"
    """Feed-forward activation."""

    layer_norm_eps: float = 1e-5
    """Epsilon of the Transformer's layer norms and of the feature layer norm."""

    dropout: float = 0.1
    """Dropout on the block outputs (after attention, after the feed-forward) and on the block input."""

    attention_dropout: float = 0.1
    """Dropout on the attention weights."""

    activation_dropout: float = 0.0
    """Dropout inside the feed-forward network, after the activation."""

    def __post_init__(self) -> None:
        if self.dim % self.num_heads != 0:
            raise ConfigError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.relative_position_bias and self.num_buckets < 4:
            raise ConfigError(f"num_buckets must be at least 4, got {self.num_buckets}")


def wav2vec2_base() -> Wav2Vec2EncoderConfig:
    """wav2vec 2.0 / HuBERT base: 512-channel group-norm CNN, 768 wide, 12 post-LN blocks (about 94 M)."""
    return Wav2Vec2EncoderConfig()


def wav2vec2_small() -> Wav2Vec2EncoderConfig:
    """512-channel layer-norm CNN, 384 wide, 12 post-LN blocks, 6 heads, FFN 1536 (about 27 M)."""
    return Wav2Vec2EncoderConfig(
        input=_waveform_input(512, "layer_norm"), dim=384, num_layers=12, num_heads=6, ffn_dim=1536
    )


def wav2vec2_tiny() -> Wav2Vec2EncoderConfig:
    """256-channel layer-norm CNN, 192 wide, 8 post-LN blocks, 4 heads, FFN 768 (about 5 M)."""
    return Wav2Vec2EncoderConfig(
        input=_waveform_input(256, "layer_norm"), dim=192, num_layers=8, num_heads=4, ffn_dim=768
    )


def wav2vec2_large() -> Wav2Vec2EncoderConfig:
    """wav2vec 2.0 large (lv60) / HuBERT large: layer-norm CNN with biases on normalised audio, 1024 wide,
    24 pre-LN blocks (about 315 M)."""
    return Wav2Vec2EncoderConfig(
        input=_waveform_input(512, "layer_norm", conv_bias=True, normalize=True),
        dim=1024,
        num_layers=24,
        num_heads=16,
        ffn_dim=4096,
        layer_norm_first=True,
    )


def wavlm_base() -> Wav2Vec2EncoderConfig:
    """WavLM base / base+: the base architecture with the gated relative position bias (320 buckets, 800)."""
    return Wav2Vec2EncoderConfig(relative_position_bias=True)


class LengthAwareGroupNormBlock(nn.Module):
    """The CNN's first block with its group norm (one group per channel) over each item's valid frames only.

    Same parameters (``conv``, ``norm``, ``dropout``) as the :class:`~audiossl.audio.cnn.ConvBlock` it
    replaces, so state dicts are unchanged. On an unpadded item it equals ``nn.GroupNorm``.
    """

    def __init__(self, block: ConvBlock):
        super().__init__()
        if not isinstance(block.norm, nn.GroupNorm) or block.norm.num_groups != block.norm.num_channels:
            raise ConfigError("LengthAwareGroupNormBlock wraps a conv block whose norm is a per-channel GroupNorm")
        self.kernel, self.stride = block.kernel, block.stride
        self.conv, self.norm, self.dropout = block.conv, block.norm, block.dropout

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, C_in, T) with valid samples ``lengths`` (B,) -> ((B, C, T_out), output lengths)."""
        out_lengths = conv_output_lengths(lengths, self.kernel, self.stride)
        y = self.conv(x)  # (B, C, T_out)
        valid = lengths_to_mask(out_lengths, y.shape[-1]).unsqueeze(1).to(y.dtype)  # (B, 1, T_out)
        count = valid.sum(-1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
        y32 = y.float()
        mean = (y32 * valid).sum(-1, keepdim=True) / count  # (B, C, 1)
        var = ((y32 - mean).square() * valid).sum(-1, keepdim=True) / count  # (B, C, 1), biased as GroupNorm
        y32 = (y32 - mean) * torch.rsqrt(var + self.norm.eps)
        y = (y32 * self.norm.weight.float()[:, None] + self.norm.bias.float()[:, None]).to(y.dtype)
        return self.dropout(F.gelu(y)), out_lengths


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """Bucket of every (query i, key j) distance ``j - i`` (S, S): WavLM's bidirectional log buckets.

    Half of the buckets per direction; in each half, distances below a quarter of ``num_buckets``
    get their own bucket, longer ones share logarithmically wider buckets up to ``max_distance``.
    """
    positions = torch.arange(length, dtype=torch.long, device=device)
    relative = positions[None, :] - positions[:, None]  # (S, S) key - query
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    scaled = torch.log(distance.float().clamp_min(1) / exact) / math.log(max_distance / exact) * (half - exact)
    large = torch.clamp_max(exact + scaled.long(), half - 1)
    return buckets + torch.where(distance < exact, distance, large)


class RelativePositionBias(nn.Module):
    """One learned scalar per head and distance bucket: ``(S,) -> (H, S, S)`` attention-logit bias."""

    def __init__(self, num_heads: int, num_buckets: int, max_distance: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length: int) -> torch.Tensor:
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance, self.embedding.weight.device)
        return self.embedding(buckets).permute(2, 0, 1)  # (H, S, S)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections and, for WavLM, a gated position bias.

    The gate (Chen et al. 2022, eq. 6): per head and query, ``a * (b * c - 1) + 2`` with ``a, b`` the
    sigmoids of two sums of a linear map of the query's head slice of the attention input and ``c``
    a learned per-head constant; the bias is multiplied by it.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, gated: bool):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gate_linear = nn.Linear(self.head_dim, 8) if gated else None
        self.gate_const = nn.Parameter(torch.ones(1, num_heads, 1, 1)) if gated else None

    def forward(
        self, x: torch.Tensor, key_padding: torch.Tensor | None, position_bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``x`` (B, S, D); ``key_padding`` (B, S) True at padding or None; ``position_bias`` (H, S, S) or None."""
        batch, length, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, S, hd)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        mask = None
        if position_bias is not None:
            bias = position_bias.unsqueeze(0).to(q.dtype)  # (1, H, S, S)
            if self.gate_linear is not None:
                gates = self.gate_linear(heads(x)).view(batch, self.num_heads, length, 2, 4).sum(-1)  # (B, H, S, 2)
                gate_a, gate_b = torch.sigmoid(gates).chunk(2, dim=-1)  # (B, H, S, 1) each
                bias = (gate_a * (gate_b * self.gate_const - 1.0) + 2.0).to(q.dtype) * bias  # (B, H, S, S)
            if key_padding is not None:
                bias = bias.masked_fill(key_padding[:, None, None, :], float("-inf"))
            mask = bias
        elif key_padding is not None:
            mask = ~key_padding[:, None, None, :]  # (B, 1, 1, S) True = attend
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B, H, S, hd)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class Wav2Vec2Block(nn.Module):
    """One Transformer block, post-LN (``attention_norm`` after the attention residual, ``ffn_norm`` after
    the feed-forward residual) or pre-LN (each norm before its sub-layer)."""

    def __init__(self, config: Wav2Vec2EncoderConfig):
        super().__init__()
        dim = config.dim
        self.layer_norm_first = config.layer_norm_first
        self.attention = SelfAttention(dim, config.num_heads, config.attention_dropout, config.relative_position_bias)
        self.attention_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(dim, config.ffn_dim)
        self.ffn_out = nn.Linear(config.ffn_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.activation = nn.GELU() if config.activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.ffn_out(self.activation_dropout(self.activation(self.ffn_in(x)))))

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor,
        key_padding: torch.Tensor | None,
        position_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x`` (B, S, D) -> (B, S, D), zero at ``padding_mask`` (B, S)."""
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), key_padding, position_bias))
            x = x + self.feed_forward(self.ffn_norm(x))
        else:
            x = self.attention_norm(x + self.dropout(self.attention(x, key_padding, position_bias)))
            x = self.ffn_norm(x + self.feed_forward(x))
        return x.masked_fill(padding_mask.unsqueeze(-1), 0.0)


@register_encoder(
    "wav2vec2",
    Wav2Vec2EncoderConfig,
    presets={
        "tiny": wav2vec2_tiny,
        "small": wav2vec2_small,
        "base": wav2vec2_base,
        "large": wav2vec2_large,
        "wavlm-base": wavlm_base,
    },
    description="wav2vec 2.0 / HuBERT / WavLM Transformer (published checkpoints convert into it)",
)
class Wav2Vec2Encoder(Encoder):
    """wav2vec 2.0-family encoder; ``forward`` returns every block's output (see the module doc)."""

    def __init__(self, config: Wav2Vec2EncoderConfig):
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.num_layers = config.num_layers
        self.embedding = TokenEmbedding(config.input, config.dim)
        frontend = self.embedding.frontend
        if frontend is not None:
            first = frontend.blocks[0]
            if isinstance(first.norm, nn.GroupNorm):
                frontend.blocks[0] = LengthAwareGroupNormBlock(first)
            if config.feature_norm:
                self.embedding.frontend_norm.eps = config.layer_norm_eps
            else:
                self.embedding.frontend_norm = nn.Identity()
        self.norm = nn.LayerNorm(config.dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.relative_position = (
            RelativePositionBias(config.num_heads, config.num_buckets, config.max_distance)
            if config.relative_position_bias
            else None
        )
        self.blocks = nn.ModuleList(Wav2Vec2Block(config) for _ in range(config.num_layers))

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        """Encoder norm (post-LN) or none, the blocks, then the final norm (pre-LN)."""
        padding_mask = embedded.padding_mask  # (B, S)
        x = embedded.tokens  # (B, S, D), positions added, zero at padding
        if not self.config.layer_norm_first:
            x = self.norm(x)
        x = self.dropout(x).masked_fill(padding_mask.unsqueeze(-1), 0.0)
        key_padding = padding_mask if bool(padding_mask.any()) else None
        position_bias = self.relative_position(x.shape[1]) if self.relative_position is not None else None
        layers = []
        for block in self.blocks:
            x = self.run_block(block, x, padding_mask, key_padding, position_bias)
            layers.append(x)
        last = self.norm(x) if self.config.layer_norm_first else x
        return self.output(last, layers, embedded.lengths, padding_mask, embedded)
