"""A third-party audiossl extension, as a separate distribution would ship it (the extension tests install it).

It registers, through the public decorators only, a toy encoder family ``toy`` (a token
embedding and one linear block per layer) and an objective ``toy_regression`` (masked tokens
regress their own unmasked tokens, read through the encoder's ``extract_features`` seam).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from audiossl.encoders import EmbeddedTokens, Encoder, EncoderOutput, InputConfig, TokenEmbedding, register_encoder
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives import LossOutput, Objective, register_objective


@dataclass(kw_only=True)
class ToyEncoderConfig:
    """A toy encoder: ``num_layers`` residual linear blocks of width ``dim``."""

    input: InputConfig = field(
        default_factory=lambda: InputConfig(
            kind="frame", num_bins=32, frame_stack=2, conv_pos_kernel=8, conv_pos_groups=4
        )
    )
    """Tokens and their positions."""
    dim: int = 16
    """Hidden size D."""
    num_layers: int = 2
    """Number of blocks."""


def toy_tiny() -> ToyEncoderConfig:
    """The only preset."""
    return ToyEncoderConfig()


@register_encoder("toy", ToyEncoderConfig, presets={"tiny": toy_tiny}, description="third-party toy encoder")
class ToyEncoder(Encoder):
    """Residual linear blocks over the shared token embedding."""

    def __init__(self, config: ToyEncoderConfig):
        super().__init__()
        self.config = config
        self.dim = config.dim
        self.num_layers = config.num_layers
        self.embedding = TokenEmbedding(config.input, config.dim)
        self.blocks = nn.ModuleList(nn.Linear(config.dim, config.dim) for _ in range(config.num_layers))

    def contextualize(self, embedded: EmbeddedTokens) -> EncoderOutput:
        x, layers = embedded.tokens, []
        for block in self.blocks:
            x = (x + torch.tanh(block(x))).masked_fill(embedded.padding_mask.unsqueeze(-1), 0.0)
            layers.append(x)
        return self.output(x, layers, embedded.lengths, embedded.padding_mask, embedded)


@dataclass(kw_only=True)
class ToyRegressionConfig:
    """Masked token regression."""

    mask_ratio: float = 0.3
    """Fraction of tokens masked."""


@register_objective("toy_regression", ToyRegressionConfig, "third-party toy objective: masked token regression")
class ToyRegression(Objective):
    """Masked tokens predict their unmasked input tokens (mean squared error)."""

    def __init__(self, encoder: Encoder, config: ToyRegressionConfig):
        super().__init__(encoder)
        self.config = config
        self.head = nn.Linear(encoder.dim, encoder.token_dim)

    def sample_mask(self, token_lengths, num_tokens, generator=None):
        draws = torch.rand((len(token_lengths), num_tokens), generator=generator, device=token_lengths.device)
        mask = (draws < self.config.mask_ratio) & lengths_to_mask(token_lengths, num_tokens)
        mask[:, 0] = True
        return mask

    def forward(self, features, lengths, step=None, generator=None):
        extracted = self.encoder.extract_features(features, lengths)
        mask = self.sample_mask(extracted.lengths, extracted.tokens.shape[1], generator)
        output = self.encoder(features, lengths, mask=mask, extracted=extracted).without_prefix()
        error = (self.head(output.last).float() - extracted.tokens.float()).pow(2).mean(dim=-1)  # (B, S)
        total = error[mask].mean()
        return LossOutput(total=total, parts={"regression": total.detach()}, metrics={})
