"""Input embedding shared by every encoder: features -> positioned tokens, with masking.

Every encoder (AST, BiMamba, Conformer) starts with a :class:`TokenEmbedding`, so all of them
read the same inputs and obey the same masking contract:

1. **Tokens.** Spectrogram patches (:func:`audiossl.audio.tokens.patchify`, time-major:
   token ``s = t * freq_patches + f``), stacked spectrogram frames
   (:func:`audiossl.audio.tokens.frame_tokens`), or the features of a waveform CNN front-end
   (:mod:`audiossl.audio.frontends`) followed by a layer norm. A linear layer projects them to
   ``dim``. For patches this equals AST's ``Conv2d(kernel=stride=patch)`` embedding, but keeps
   the token order of ``tokens.py`` so masked-prediction targets line up with the tokens.
2. **Mask** (optional). ``mask`` (B, S) bool replaces those tokens by a learned
   ``mask_embedding`` (:func:`apply_token_mask`), *before* positions are added (SSAST, wav2vec 2.0).
3. **Positions.** Length-agnostic, never depending on the batch's padded length:
   patches get a learned frequency-index embedding plus a sinusoidal code of the time-patch
   index; frames and waveform features get a convolutional positional embedding (wav2vec 2.0),
   which zeroes padding first. See :class:`InputConfig.positions`.
4. **Drop** (optional). ``keep_indices`` (B, K) keeps only those tokens (:func:`gather_kept`),
   *after* positions, so every kept token keeps the position of its place in the full
   sequence (MAE, He et al. 2022). With a convolutional position, dropped tokens are zeroed
   before the convolution so their content cannot leak into kept tokens.

Padding invariance: a padded batch gives, at every valid position, what each item gives
alone; padding positions of the output are exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from audiossl.audio.tokens import PatchConfig, frame_tokens, patch_counts, patchify
from audiossl.errors import DataError
from audiossl.nn.masking import lengths_to_padding_mask
from audiossl.nn.positional import ConvPositionalEmbedding, sinusoidal_encoding


@dataclass(kw_only=True)
class InputConfig:
    """How an encoder turns its input into tokens (the token width is the encoder's ``dim``)."""

    kind: Literal["patch", "frame", "waveform"] = "patch"
    """Token kind: spectrogram ``patch`` es (SSAST patch), stacked spectrogram ``frame`` s (SSAST
    frame), or ``waveform`` samples through a CNN front-end (wav2vec 2.0 / w2v-BERT style)."""

    num_bins: int = 128
    """Feature channels C of the input spectrogram (e.g. 128 fbank bins). Ignored for waveform."""

    patch: PatchConfig = field(default_factory=PatchConfig)
    """Patch size and stride (time x frequency) for ``kind="patch"``."""

    frame_stack: int = 1
    """Frames stacked into one token for ``kind="frame"`` (1 = one token per frame)."""

    frontend: str = "wav2vec2_cnn"
    """Registered waveform front-end (:mod:`audiossl.audio.frontends`) for ``kind="waveform"``."""

    frontend_options: dict[str, Any] = field(default_factory=lambda: {"mode": "layer_norm"})
    """Fields of the front-end's config that differ from its defaults. The default picks the CNN's
    per-frame layer norm (wav2vec 2.0 large): its group-norm mode normalises over the padded
    time axis, which would break padding invariance."""

    positions: Literal["auto", "sinusoidal", "conv", "none"] = "auto"
    """Positional information. ``auto``: sinusoidal for patches, conv for frames and waveforms.
    ``sinusoidal``: fixed code of the time index (patches: of the time-patch index).
    ``conv``: convolutional embedding over time (patches: along time, per frequency row).
    Patches also get a learned frequency-index embedding unless ``none``."""

    conv_pos_kernel: int = 128
    """Kernel width of the convolutional positional embedding (in tokens)."""

    conv_pos_groups: int = 16
    """Groups of the convolutional positional embedding; must divide ``dim``."""

    dropout: float = 0.0
    """Dropout on the positioned tokens."""


@dataclass
class TokenFeatures:
    """What :meth:`TokenEmbedding.extract_features` returns: the input as tokens, before projection.

    Objectives score against these (wav2vec 2.0 quantizes ``tokens``; its feature penalty reads
    ``frontend``; SSAST's targets are the patches), and hand them back to the encoder
    (``encoder(..., extracted=...)``) so the front-end runs once per pass.

    ``tokens``: (B, S, token_dim) unmasked tokens as the projection receives them (patches,
    stacked frames, or the waveform CNN's features after its layer norm), zero-padded or not
    past ``lengths`` as the token maker left them.
    ``lengths``: (B,) valid tokens per item.
    ``frontend``: (B, S, C) the waveform front-end's raw output before its layer norm (what the
    wav2vec 2.0 feature penalty and quantizer-style targets read); None for spectrogram tokens.
    ``freq_patches``: tokens per time step (frequency patches; 1 for frames and waveforms).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    frontend: torch.Tensor | None
    freq_patches: int


@dataclass
class EmbeddedTokens:
    """What :class:`TokenEmbedding` returns.

    ``tokens``: (B, S, D) positioned tokens, zero at padding (S = K when ``keep_indices`` was given).
    ``lengths``: (B,) valid tokens per item.
    ``padding_mask``: (B, S) bool, True at padding.
    ``freq_patches``: tokens per time step (frequency patches; 1 for frames and waveforms).
    ``kept_indices``: the ``keep_indices`` (B, K) that were applied, else None.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    padding_mask: torch.Tensor
    freq_patches: int
    kept_indices: torch.Tensor | None = None


def apply_token_mask(tokens: torch.Tensor, mask: torch.Tensor, mask_embedding: torch.Tensor) -> torch.Tensor:
    """Replace the tokens where ``mask`` (B, S) is True by ``mask_embedding`` (D,) -> (B, S, D)."""
    if mask.shape != tokens.shape[:2]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected (B, S) = {tuple(tokens.shape[:2])}")
    return torch.where(mask.unsqueeze(-1), mask_embedding.to(tokens.dtype), tokens)


def kept_lengths(keep_indices: torch.Tensor) -> torch.Tensor:
    """Number of kept tokens per item (B,): the entries >= 0 of ``keep_indices`` (B, K)."""
    return (keep_indices >= 0).sum(dim=1)


def check_keep_indices(keep_indices: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
    """Validate ``keep_indices`` (B, K) against ``token_lengths`` (B,); return them as long.

    Raises ValueError when the shape is wrong, when ``-1`` padding precedes a kept index, or
    when an index points past the item's valid tokens (a padding token would be kept).
    """
    if keep_indices.dim() != 2 or keep_indices.shape[0] != token_lengths.shape[0]:
        raise ValueError(
            f"keep_indices must be (B, K) with B = {token_lengths.shape[0]}, got {tuple(keep_indices.shape)}"
        )
    keep_indices = keep_indices.long()
    valid = keep_indices >= 0  # (B, K)
    prefix = torch.arange(keep_indices.shape[1], device=keep_indices.device) < valid.sum(dim=1, keepdim=True)
    if not torch.equal(valid, prefix) or (keep_indices < -1).any():
        raise ValueError("keep_indices: only -1 may pad an item, and it must come after every kept index")
    too_far = valid & (keep_indices >= token_lengths.to(keep_indices.device).unsqueeze(1))
    if too_far.any():
        item = int(too_far.any(dim=1).nonzero()[0])
        raise ValueError(
            f"keep_indices of item {item} point past its {int(token_lengths[item])} valid tokens: "
            f"{keep_indices[item][too_far[item]].tolist()}"
        )
    return keep_indices


def gather_kept(
    tokens: torch.Tensor, token_lengths: torch.Tensor, keep_indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep only the tokens at ``keep_indices`` -> (kept (B, K, D), kept_lengths (B,)).

    ``keep_indices`` (B, K) long: for item b, the indices into its ``token_lengths[b]`` valid
    tokens, in the order they should appear, followed by ``-1`` padding when the item keeps
    fewer than K tokens (so the kept tokens are a prefix, like every other padded batch).
    Order is preserved as given: pass sorted indices to order-sensitive encoders (Mamba,
    Conformer's convolution). Padding rows of ``kept`` are zero.
    """
    keep_indices = check_keep_indices(keep_indices, token_lengths)
    valid = keep_indices >= 0  # (B, K)
    counts = valid.sum(dim=1)  # (B,)
    index = keep_indices.clamp(min=0).unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, K, D)
    kept = tokens.gather(1, index).masked_fill(~valid.unsqueeze(-1), 0.0)  # (B, K, D)
    return kept, counts


class TokenEmbedding(nn.Module):
    """Features (B, F, C) or waveforms (B, T) + lengths -> :class:`EmbeddedTokens`.

    ``dim`` is the token width D; it is an argument rather than an :class:`InputConfig` field
    because it is the encoder's hidden size, which the encoder config owns (one source of truth).
    Owns the token projection, the positional parameters and the learned ``mask_embedding``
    (D,), which only receives gradients when a ``mask`` is used.
    """

    def __init__(self, config: InputConfig, dim: int):
        super().__init__()
        self.config = config
        self.dim = dim
        self.frontend: nn.Module | None = None
        self.frontend_norm: nn.LayerNorm | None = None
        self.freq_embedding: nn.Embedding | None = None
        if config.kind == "patch":
            _, self.freq_patches = patch_counts(torch.zeros(1, dtype=torch.long), config.num_bins, config.patch)
            if self.freq_patches < 1:
                raise ValueError(f"{config.num_bins} bins give no frequency patch of {config.patch.patch_freq}")
            in_dim = config.patch.patch_time * config.patch.patch_freq
            if config.positions != "none":
                self.freq_embedding = nn.Embedding(self.freq_patches, dim)
                nn.init.normal_(self.freq_embedding.weight, std=0.02)
        elif config.kind == "frame":
            self.freq_patches = 1
            in_dim = config.num_bins * config.frame_stack
        elif config.kind == "waveform":
            from audiossl.audio.frontends import create_frontend

            self.freq_patches = 1
            self.frontend = create_frontend(config.frontend, config.frontend_options)
            in_dim = self.frontend.num_channels
            self.frontend_norm = nn.LayerNorm(in_dim)
        else:
            raise ValueError(f"unknown input kind {config.kind!r}; known: patch, frame, waveform")
        self.projection = nn.Linear(in_dim, dim)
        positions = config.positions
        if positions == "auto":
            positions = "sinusoidal" if config.kind == "patch" else "conv"
        self.positions = positions
        self.conv_positions = (
            ConvPositionalEmbedding(dim, config.conv_pos_kernel, config.conv_pos_groups)
            if positions == "conv"
            else None
        )
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())
        self.dropout = nn.Dropout(config.dropout)

    def token_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens produced for inputs of ``lengths`` frames (samples for waveforms) (B,)."""
        config = self.config
        if config.kind == "patch":
            time_patches, freq_patches = patch_counts(lengths, config.num_bins, config.patch)
            return time_patches * freq_patches
        if config.kind == "frame":
            return torch.div(lengths, config.frame_stack, rounding_mode="floor")
        return self.frontend.output_lengths(lengths)

    @property
    def token_dim(self) -> int:
        """Width of the tokens before projection (``TokenFeatures.tokens``)."""
        return self.projection.in_features

    def extract_features(self, features: torch.Tensor, lengths: torch.Tensor) -> TokenFeatures:
        """Raw tokens before projection (and the waveform front-end's output) -> :class:`TokenFeatures`.

        ``features`` (B, F, C) spectrogram or (B, T) waveform; ``lengths`` (B,) valid frames
        (samples). Raises :class:`~audiossl.errors.DataError` naming the item when an item
        yields no token.
        """
        config = self.config
        if lengths.shape != features.shape[:1]:
            raise ValueError(f"lengths must be (B,) = ({features.shape[0]},), got {tuple(lengths.shape)}")
        frontend = None
        if config.kind == "waveform":
            if features.dim() != 2:
                raise ValueError(f"waveform input must be (B, T), got {tuple(features.shape)}")
            frontend, token_lengths = self.frontend(features, lengths)  # (B, S, frontend_dim)
            tokens = self.frontend_norm(frontend)
        elif features.dim() != 3 or features.shape[-1] != config.num_bins:
            raise ValueError(f"features must be (B, F, {config.num_bins}), got {tuple(features.shape)}")
        elif config.kind == "patch":
            tokens, token_lengths, _ = patchify(features, lengths, config.patch)  # (B, S, pt * pf)
        else:
            tokens, token_lengths = frame_tokens(features, lengths, config.frame_stack)  # (B, S, C * stack)
        empty = (token_lengths <= 0).nonzero().flatten().tolist()
        if empty:
            item = empty[0]
            raise DataError(
                f"item {item} of the batch ({int(lengths[item])} input frames/samples) is too short to give a "
                f"single {config.kind} token; {len(empty)} item(s) affected: {empty[:10]}"
            )
        return TokenFeatures(tokens, token_lengths, frontend, self.freq_patches)

    def _add_positions(
        self, tokens: torch.Tensor, padding_mask: torch.Tensor, keep_indices: torch.Tensor | None
    ) -> torch.Tensor:
        """Add positional information to (B, S, D) tokens laid out time-major."""
        batch, length, dim = tokens.shape
        freq = self.freq_patches
        if self.positions == "conv":
            # Tokens that will be dropped must not reach kept tokens through the convolution.
            hidden = padding_mask
            if keep_indices is not None:
                # -1 padding scatters into an extra column that is then dropped.
                slots = torch.where(keep_indices >= 0, keep_indices, length)  # (B, K)
                kept = torch.zeros(batch, length + 1, dtype=torch.bool, device=tokens.device)
                kept = kept.scatter(1, slots, True)[:, :length]  # (B, S)
                hidden = padding_mask | ~kept
            rows = tokens.masked_fill(hidden.unsqueeze(-1), 0.0)
            if freq > 1:  # convolve along time, separately for every frequency row
                rows = rows.view(batch, length // freq, freq, dim).transpose(1, 2).reshape(batch * freq, -1, dim)
                row_mask = hidden.view(batch, -1, freq).transpose(1, 2).reshape(batch * freq, -1)
                rows = self.conv_positions(rows, row_mask)  # (B * Fp, Tp, D)
                rows = rows.view(batch, freq, -1, dim).transpose(1, 2).reshape(batch, length, dim)
            else:
                rows = self.conv_positions(rows, hidden)  # (B, S, D)
            tokens = torch.where(hidden.unsqueeze(-1), tokens, rows)
        elif self.positions == "sinusoidal":
            time_index = torch.arange(length, device=tokens.device) // freq  # (S,)
            tokens = tokens + sinusoidal_encoding(time_index, dim).to(tokens.dtype)
        if self.freq_embedding is not None:
            freq_index = torch.arange(length, device=tokens.device) % freq  # (S,)
            tokens = tokens + self.freq_embedding(freq_index).to(tokens.dtype)
        return tokens

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        mask: torch.Tensor | None = None,
        keep_indices: torch.Tensor | None = None,
    ) -> EmbeddedTokens:
        """Embed, optionally mask, position, optionally drop: :meth:`extract_features` then :meth:`embed`.

        ``features`` (B, F, C) spectrogram or (B, T) waveform; ``lengths`` (B,) valid frames
        (samples). ``mask`` (B, S) bool over the S tokens of :meth:`token_lengths`;
        ``keep_indices`` (B, K) as in :func:`gather_kept`. At most one of them.
        Raises :class:`~audiossl.errors.DataError` naming the item when an item yields no token.
        """
        if mask is not None and keep_indices is not None:
            raise ValueError("give either mask or keep_indices, not both")
        return self.embed(self.extract_features(features, lengths), mask=mask, keep_indices=keep_indices)

    def embed(
        self,
        extracted: TokenFeatures,
        mask: torch.Tensor | None = None,
        keep_indices: torch.Tensor | None = None,
    ) -> EmbeddedTokens:
        """Project the tokens of :meth:`extract_features`, then mask, position and drop (see :meth:`forward`)."""
        if mask is not None and keep_indices is not None:
            raise ValueError("give either mask or keep_indices, not both")
        raw, token_lengths = extracted.tokens, extracted.lengths  # (B, S, token_dim), (B,)
        padding_mask = lengths_to_padding_mask(token_lengths, raw.shape[1])  # (B, S)
        tokens = self.projection(raw)  # (B, S, D)
        if mask is not None:
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool (True = replace by the mask embedding), got {mask.dtype}")
            tokens = apply_token_mask(tokens, mask, self.mask_embedding)
        if keep_indices is not None:
            keep_indices = check_keep_indices(keep_indices.to(tokens.device), token_lengths)
        tokens = self._add_positions(tokens, padding_mask, keep_indices)
        tokens = self.dropout(tokens).masked_fill(padding_mask.unsqueeze(-1), 0.0)
        if keep_indices is not None:
            tokens, token_lengths = gather_kept(tokens, token_lengths, keep_indices)  # (B, K, D)
            empty = (token_lengths <= 0).nonzero().flatten().tolist()
            if empty:
                raise ValueError(f"keep_indices keep no token of item(s) {empty[:10]}")
            padding_mask = lengths_to_padding_mask(token_lengths, tokens.shape[1])
        return EmbeddedTokens(tokens, token_lengths, padding_mask, self.freq_patches, keep_indices)
