"""AST: a ViT over spectrogram patches or frames (Gong et al. 2021; SSAST, Gong et al. 2022).

Tokens come from the shared :class:`~audiossl.encoders.embed.TokenEmbedding` (patches by
default: 16 x 16, no overlap, as SSAST pretraining), optional learned cls tokens are put in
front (SSAST uses two: cls and dist), and pre-norm transformer blocks with SDPA attention and
key padding masks follow. Nothing depends on a fixed input length: time positions are
sinusoidal (or convolutional), unlike SSAST's learned table cut to the pretraining length.

The cls tokens are part of the output sequence (``EncoderOutput.num_prefix_tokens``): they come
first, are counted in ``lengths`` and are never padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from audiossl.encoders.base import Encoder, EncoderOutput, register_encoder
from audiossl.encoders.embed import EmbeddedTokens, InputConfig, TokenEmbedding
from audiossl.nn.attention import TransformerBlock, attention_mask


@dataclass(kw_only=True)
class ASTConfig:
    """An AST encoder. Presets: :func:`ast_tiny`, :func:`ast_small`, :func:`ast_base`."""

    input: InputConfig = field(default_factory=InputConfig)
    """Tokens (patches or frames) and their positions."""

    dim: int = 768
    """Hidden size D."""

    num_layers: int = 12
    """Number of transformer blocks."""

    num_heads: int = 12
    """Attention heads; must divide ``dim``."""

    mlp_ratio: float = 4.0
    """MLP hidden size as a multiple of ``dim``."""

    num_cls_tokens: int = 2
    """Learned tokens put before the input tokens: 0, 1 (cls) or 2 (cls + dist, as SSAST)."""

    dropout: float = 0.0
    """Dropout after attention and in the MLP."""

    attention_dropout: float = 0.0
    """Dropout on the attention weights."""

    norm_eps: float = 1e-6
    """Epsilon of the layer norms."""


def ast_base() -> ASTConfig:
    """SSAST-Base size: 768 wide, 12 blocks, 12 heads (about 85 M parameters)."""
    return ASTConfig(dim=768, num_layers=12, num_heads=12)


def ast_small() -> ASTConfig:
    """SSAST-Small size: 384 wide, 12 blocks, 6 heads (about 22 M parameters)."""
    config = ast_base()
    config.dim = 384
    config.num_heads = 6
    return config


def ast_tiny() -> ASTConfig:
    """SSAST-Tiny size: 192 wide, 12 blocks, 3 heads (about 5.4 M parameters)."""
    config = ast_base()
    config.dim = 192
    config.num_heads = 3
    return config


@register_encoder(
    "ast",
    ASTConfig,
    presets={"tiny": ast_tiny, "small": ast_small, "base": ast_base},
    description="Audio Spectrogram Transformer (ViT over patches or frames; SSAST)",
)
class ASTEncoder(Encoder):
    """Audio Spectrogram Transformer; ``forward`` returns every block's output."""

    def __init__(self, config: ASTConfig):
        super().__init__()
        if not 0 <= config.num_cls_tokens <= 2:
            raise ValueError(f"num_cls_tokens must be 0, 1 or 2, got {config.num_cls_tokens}")
        self.config = config
        self.dim = config.dim
        self.num_layers = config.num_layers
        self.num_prefix_tokens = config.num_cls_tokens
        self.embedding = TokenEmbedding(config.input, config.dim)
        self.cls_tokens = nn.Parameter(torch.zeros(config.num_cls_tokens, config.dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(
                config.dim,
                config.num_heads,
                mlp_ratio=config.mlp_ratio,
                dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                norm_eps=config.norm_eps,
            )
            for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        # ViT/SSAST initialisation: truncated normal (std 0.02) for linear layers and cls tokens.
        nn.init.trunc_normal_(self.cls_tokens, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        """Cls tokens first, then the transformer blocks and the final norm."""
        x = embedded.tokens  # (B, S, D)
        padding_mask = embedded.padding_mask  # (B, S)
        out_lengths = embedded.lengths + self.num_prefix_tokens
        if self.num_prefix_tokens:
            batch = x.shape[0]
            cls = self.cls_tokens.to(x.dtype).unsqueeze(0).expand(batch, -1, -1)  # (B, n, D)
            x = torch.cat([cls, x], dim=1)  # (B, n + S, D)
            no_padding = padding_mask.new_zeros(batch, self.num_prefix_tokens)
            padding_mask = torch.cat([no_padding, padding_mask], dim=1)  # (B, n + S)
        attn_mask = attention_mask(padding_mask)
        block_padding = None if attn_mask is None else padding_mask  # nothing to zero without padding
        layers = []
        for block in self.blocks:
            x = self.run_block(block, x, block_padding, attn_mask)
            layers.append(x)
        return self.output(self.norm(x), layers, out_lengths, padding_mask, embedded)


def create_ast(config: ASTConfig) -> ASTEncoder:
    """Build an AST encoder from its config."""
    return ASTEncoder(config)
