"""``bestrq``: masked prediction of random-projection quantizer codes (BEST-RQ, Chiu et al. 2022).

No k-means, no teacher: every input token (the stacked frames or patch the encoder's token
maker builds, before its projection) is multiplied by a frozen random matrix (Xavier-uniform),
L2-normalised and replaced by the index of the most similar code of a frozen random codebook
(standard normal rows, L2-normalised; the highest cosine is the nearest normalised code). The
encoder sees span-masked tokens (its mask embedding in their place) and a linear softmax layer
per codebook predicts the code of every masked token; the loss is the cross-entropy averaged
over the masked tokens and the codebooks.

Projection and codebooks are buffers of :class:`RandomProjectionQuantizer` drawn from their own
seeded generator: they are saved in the state dict (a resumed run, ``run.init_from`` and
``load_pretrained`` see the same quantizer), are not parameters, so never reach the optimizer,
and never change.

Normalisation: BEST-RQ standardises the log-mel input to zero mean and unit variance, which the
input pipeline's ``data.normalize: global`` does per channel; ``normalize: instance`` in addition
standardises every token dimension over the utterance's valid tokens.

Differences from the paper: masked tokens get the encoder's learned mask embedding instead of
N(0, 0.1) noise in the input features (one seam for every objective and encoder). For waveform
encoders, whose tokens come from a trainable CNN, the quantizer reads non-overlapping raw-sample
windows at the token hop instead (standardised per window); the paper quantizes log-mel frames,
which spectrogram encoders give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.encoders.base import Encoder
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl.objectives.base import LossOutput, Objective, register_objective, scalar_metrics, trim_to_longest
from audiossl.objectives.data2vec import masked_instance_norm
from audiossl.objectives.masking import MaskConfig, sample_mask


def _default_mask() -> MaskConfig:
    return MaskConfig(kind="span", start_prob=0.01, span_length=20, min_spans=1)


@dataclass(kw_only=True)
class QuantizerConfig:
    """The frozen random-projection quantizer (defaults: BEST-RQ's one codebook of 8192 codes of width 16)."""

    codebook_size: int = 8192
    """Codes per codebook."""

    codebook_dim: int = 16
    """Width of the projection and of the codes."""

    num_codebooks: int = 1
    """Independent (projection, codebook) pairs, each with its own softmax head (BEST-RQ: 1)."""

    seed: int = 1234
    """Seed of the projection and codebooks (drawn from their own generator, not the global RNG)."""

    normalize: str = "none"
    """``none``: tokens as the input pipeline normalised them; ``instance``: also standardise each
    token dimension over the utterance's valid tokens."""

    def __post_init__(self) -> None:
        if self.codebook_size < 2 or self.codebook_dim < 1 or self.num_codebooks < 1:
            raise ConfigError("quantizer needs codebook_size >= 2, codebook_dim >= 1 and num_codebooks >= 1")
        if self.normalize not in ("none", "instance"):
            raise ConfigError(f"quantizer.normalize must be none or instance, got {self.normalize!r}")


@dataclass(kw_only=True)
class BestRQConfig:
    """BEST-RQ pretraining."""

    mask: MaskConfig = field(default_factory=_default_mask)
    """Span masking: p = 0.01 of the tokens start a span of 20 tokens (400 ms at 20 ms tokens, BEST-RQ)."""

    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """The frozen random-projection quantizer that makes the targets."""

    unmasked_weight: float = 0.0
    """Weight of the cross-entropy over unmasked tokens (BEST-RQ: 0; its accuracy is logged either way)."""

    def __post_init__(self) -> None:
        if self.unmasked_weight < 0:
            raise ConfigError(f"bestrq unmasked_weight must be >= 0, got {self.unmasked_weight}")


class RandomProjectionQuantizer(nn.Module):
    """Frozen ``(tokens (..., P)) -> codes (..., G)``: random projection, L2 norm, nearest normalised code.

    ``projection`` (G, P, C) and ``codebooks`` (G, K, C) are buffers: saved, never trained.
    """

    def __init__(self, input_dim: int, config: QuantizerConfig):
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        groups, size, width = config.num_codebooks, config.codebook_size, config.codebook_dim
        bound = math.sqrt(6.0 / (input_dim + width))  # Xavier uniform
        projection = (torch.rand(groups, input_dim, width, generator=generator) * 2 - 1) * bound
        codebooks = F.normalize(torch.randn(groups, size, width, generator=generator), dim=-1)
        self.register_buffer("projection", projection)  # (G, P, C)
        self.register_buffer("codebooks", codebooks)  # (G, K, C)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codes of ``tokens`` (..., P) -> (..., G) long; in float32 even under autocast (stable targets)."""
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            projected = torch.einsum("...p,gpc->...gc", tokens.float(), self.projection.float())  # (..., G, C)
            projected = F.normalize(projected, dim=-1)
            similarity = torch.einsum("...gc,gkc->...gk", projected, self.codebooks.float())  # (..., G, K)
        return similarity.argmax(dim=-1)


def waveform_windows(waveforms: torch.Tensor, token_lengths: torch.Tensor, hop: int) -> torch.Tensor:
    """Non-overlapping windows of ``hop`` samples, one per token, standardised per window -> (B, S, hop)."""
    tokens = int(token_lengths.max())
    needed = tokens * hop
    if waveforms.shape[1] < needed:
        waveforms = F.pad(waveforms, (0, needed - waveforms.shape[1]))
    windows = waveforms[:, :needed].float().reshape(waveforms.shape[0], tokens, hop)  # (B, S, hop)
    mean = windows.mean(dim=-1, keepdim=True)
    std = windows.std(dim=-1, keepdim=True, unbiased=False)
    return (windows - mean) / (std + 1e-5)


class TokenQuantizer(RandomProjectionQuantizer):
    """The quantizer of an encoder's input tokens: :meth:`codes` (features, lengths) -> codes (B, S, G), lengths."""

    def __init__(self, encoder: Encoder, config: QuantizerConfig):
        waveform = encoder.input_config.kind == "waveform"
        hop = 0
        if waveform:  # samples per token of the waveform CNN
            hop = max(int(round(160000 / float(encoder.token_lengths(torch.tensor([160000]))[0]))), 1)
        super().__init__(hop if waveform else encoder.token_dim, config)
        self.waveform, self.hop = waveform, hop

    @torch.no_grad()
    def codes(
        self, encoder: Encoder, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (B, S, G) of ``encoder``'s input tokens of ``features`` (B, F, C) or (B, T), and token lengths (B,)."""
        if self.waveform:
            token_lengths = encoder.token_lengths(lengths)
            tokens = waveform_windows(features, token_lengths, self.hop)
        else:
            extracted = encoder.extract_features(features, lengths)
            tokens, token_lengths = extracted.tokens, extracted.lengths  # (B, S, P), (B,)
        if self.config.normalize == "instance":
            tokens = masked_instance_norm(tokens.float(), token_lengths)
        return self(tokens), token_lengths


def code_perplexity(codes: torch.Tensor, size: int) -> torch.Tensor:
    """exp(entropy) of the code histogram of ``codes`` (N,): how many codes the targets use."""
    if codes.numel() == 0:
        return torch.zeros(())
    counts = torch.bincount(codes.flatten(), minlength=size).float()
    probs = counts / counts.sum()
    return torch.exp(-(probs * probs.clamp_min(1e-12).log()).sum())


@register_objective("bestrq", BestRQConfig, "BEST-RQ: masked prediction of frozen random-projection codes")
class BestRQObjective(Objective):
    """BEST-RQ on any encoder (see the module doc)."""

    def __init__(self, encoder: Encoder, config: BestRQConfig):
        super().__init__(encoder)
        self.config = config
        self.grid_width = encoder.freq_patches
        self.quantizer = TokenQuantizer(encoder, config.quantizer)
        quantizer = config.quantizer
        self.head = nn.Linear(encoder.dim, quantizer.num_codebooks * quantizer.codebook_size)

    def sample_mask(
        self, token_lengths: torch.Tensor, num_tokens: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw this objective's mask for tokens of ``token_lengths`` (B,) -> (B, num_tokens) bool."""
        return sample_mask(self.config.mask, token_lengths, num_tokens, self.grid_width, generator)

    def code_loss(
        self, hidden: torch.Tensor, codes: torch.Tensor, selected: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy over the ``selected`` (B, S) tokens, averaged over codebooks."""
        quantizer = self.config.quantizer
        chosen = codes[selected]  # (N, G)
        if chosen.shape[0] == 0:
            zero = hidden.sum() * 0.0
            return zero, zero.detach()
        logits = self.head(hidden[selected]).float().view(-1, quantizer.num_codebooks, quantizer.codebook_size)
        loss = F.cross_entropy(logits.flatten(0, 1), chosen.flatten())
        accuracy = (logits.argmax(dim=-1) == chosen).float().mean()
        return loss, accuracy

    def loss_with_mask(
        self, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor
    ) -> LossOutput:
        """The loss for a given ``mask`` (B, S) and target ``codes`` (B, S, G)."""
        config = self.config
        output = self.encoder(features, lengths, mask=mask).without_prefix()
        valid = lengths_to_mask(output.lengths, mask.shape[1])  # (B, S)
        masked, masked_accuracy = self.code_loss(output.last, codes, mask & valid)
        if config.unmasked_weight > 0:
            unmasked, unmasked_accuracy = self.code_loss(output.last, codes, ~mask & valid)
        else:
            with torch.no_grad():
                unmasked, unmasked_accuracy = self.code_loss(output.last, codes, ~mask & valid)
        total = masked + config.unmasked_weight * unmasked
        metrics = {
            "masked_accuracy": masked_accuracy,
            "unmasked_accuracy": unmasked_accuracy,
            "masked_fraction": (mask & valid).sum() / valid.sum().clamp(min=1),
            "code_perplexity": code_perplexity(codes[valid][:, 0], config.quantizer.codebook_size),
        }
        parts = {"masked": masked, "unmasked": unmasked if config.unmasked_weight > 0 else unmasked.detach()}
        return LossOutput(total=total, parts=parts, metrics=scalar_metrics(metrics))

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        step: int | None = None,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        features = trim_to_longest(features, lengths)
        codes, token_lengths = self.quantizer.codes(self.encoder, features, lengths)  # (B, S, G), (B,)
        mask = self.sample_mask(token_lengths, codes.shape[1], generator)
        return self.loss_with_mask(features, lengths, mask, codes)
