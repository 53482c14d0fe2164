"""The CTC head: upstream frames (B, S, D) -> log-probabilities over units (B, S', V), and its loss.

The default for small corpora is a 2-layer bidirectional LSTM of 128 units per direction over
pairs of stacked frames, with SpecAugment masking of its input in training: SUPERB's ASR
downstream is a 2-layer BiLSTM (Yang et al., 2021), and a per-frame linear map of features
cannot model the context a character or phone spans, so on real recordings it stays near
the all-blank solution (docs/asr.md has the evidence). ``linear`` is the SUPERB-style probe of
what single frames already encode; ``mlp`` adds one hidden layer.

``stride`` stacks that many consecutive frames into one (``S' = ceil(S / stride)``): 100 frames/s
fbank carries more frames than a CTC head needs for characters or phones, and halving them
halves the recurrent head's cost; tasks choose it from the upstream's frame rate
(:func:`auto_stride`: at least 40 frames/s are kept, so 50 and 25 frames/s SSL layers are not
stacked). The output lengths are the stacked lengths; :func:`check_alignable` names an
utterance with more units than frames.
SpecAugment (Park et al., 2019; :class:`audiossl.audio.augment.SpecAugment`) masks runs of
frames and of feature dimensions of the head's input (standardised features, masked to 0,
their mean) during training only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.audio.augment import SpecAugment, SpecAugmentConfig
from audiossl.errors import ConfigError, DataError
from audiossl.nn.masking import lengths_to_mask

HEAD_KINDS = ("linear", "mlp", "bilstm")


@dataclass(kw_only=True)
class CTCHeadConfig:
    """Shape of the CTC head and the augmentation of its input."""

    kind: str = "bilstm"
    """'linear', 'mlp' (one hidden layer with GELU) or 'bilstm' (bidirectional LSTM, then linear)."""
    hidden: int = 128
    """Hidden size of the MLP, or of each LSTM direction."""
    layers: int = 2
    """Number of LSTM layers (bilstm only)."""
    dropout: float = 0.1
    """Dropout on the head's input (and between LSTM layers)."""
    stride: int = 1
    """Consecutive frames stacked into one before the head (1 = the upstream's frame rate; see :func:`auto_stride`)."""
    spec_augment: bool = True
    """Mask runs of frames and of feature dimensions of the input in training (SpecAugment)."""
    time_masks: int = 2
    """SpecAugment: time masks per utterance."""
    time_mask_ratio: float = 0.1
    """SpecAugment: a time mask covers at most this share of the utterance's frames (and 20 frames)."""
    freq_masks: int = 2
    """SpecAugment: feature-dimension masks per utterance."""
    freq_mask_ratio: float = 0.1
    """SpecAugment: a feature mask covers at most this share of the dimensions."""

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ConfigError(f"unknown CTC head kind {self.kind!r}; choose one of {', '.join(HEAD_KINDS)}")
        if self.hidden < 1 or self.layers < 1 or self.stride < 1:
            raise ConfigError("hidden, layers and stride must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.time_masks < 0 or self.freq_masks < 0:
            raise ConfigError("time_masks and freq_masks must be >= 0")
        if not (0.0 <= self.time_mask_ratio <= 1.0 and 0.0 <= self.freq_mask_ratio <= 1.0):
            raise ConfigError("time_mask_ratio and freq_mask_ratio must be in [0, 1]")


#: Longest SpecAugment time mask, in upstream frames.
MAX_TIME_MASK = 20
#: Automatic frame stacking keeps at least this many frames per second (characters and phones come at 10-20/s).
MIN_STACKED_RATE = 40.0


def auto_stride(frame_rate: float | None, min_rate: float = MIN_STACKED_RATE) -> int:
    """Frames to stack so the head still sees at least ``min_rate`` frames/s (1 when the rate is unknown).

    100 frames/s fbank -> 2 (50 frames/s); 50 frames/s SSL layers and slower -> 1.
    """
    if frame_rate is None or frame_rate <= 0:
        return 1
    return max(1, int(frame_rate // min_rate))


def stack_frames(frames: torch.Tensor, lengths: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (B, S, D) -> (B, ceil(S / stride), stride * D), lengths -> ceil(lengths / stride).

    Frames past each item's length are zeroed first, so an item's last, partial group is the
    same in a padded batch as alone.
    """
    if stride == 1:
        return frames, lengths
    batch, steps, dim = frames.shape
    valid = lengths_to_mask(lengths.to(frames.device), steps).unsqueeze(-1)  # (B, S, 1)
    frames = frames.masked_fill(~valid, 0.0)
    padded = -(-steps // stride) * stride
    frames = F.pad(frames, (0, 0, 0, padded - steps))  # (B, S'', D)
    stacked = frames.reshape(batch, padded // stride, stride * dim)  # (B, S', stride * D)
    return stacked, torch.div(lengths + stride - 1, stride, rounding_mode="floor")


class CTCHead(nn.Module):
    """Frames (B, S, D) + lengths (B,) -> log-probabilities (B, S', V) + lengths (B,) at ``1 / stride`` the rate."""

    def __init__(self, dim: int, vocab_size: int, config: CTCHeadConfig | None = None):
        super().__init__()
        self.config = config = config or CTCHeadConfig()
        self.vocab_size = vocab_size
        self.augment: SpecAugment | None = None
        if config.spec_augment:
            self.augment = SpecAugment(
                SpecAugmentConfig(
                    time_masks=config.time_masks,
                    time_width=MAX_TIME_MASK,
                    max_time_ratio=config.time_mask_ratio,
                    freq_masks=config.freq_masks,
                    freq_width=max(1, round(config.freq_mask_ratio * dim)) if config.freq_mask_ratio > 0 else 0,
                )
            )
        self.dropout = nn.Dropout(config.dropout)
        self.lstm: nn.LSTM | None = None
        self.hidden: nn.Module = nn.Identity()
        in_dim = out_dim = config.stride * dim
        if config.kind == "mlp":
            self.hidden = nn.Sequential(nn.Linear(in_dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout))
            out_dim = config.hidden
        elif config.kind == "bilstm":
            self.lstm = nn.LSTM(
                in_dim,
                config.hidden,
                num_layers=config.layers,
                batch_first=True,
                bidirectional=True,
                dropout=config.dropout if config.layers > 1 else 0.0,
            )
            out_dim = 2 * config.hidden
        self.output = nn.Linear(out_dim, vocab_size)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment is not None:
            frames = self.augment(frames, lengths)  # identity in eval mode
        frames, lengths = stack_frames(frames, lengths, self.config.stride)  # (B, S', stride * D)
        hidden = self.dropout(frames)
        if self.lstm is not None:
            # Packing keeps the backward direction from reading padding.
            packed = nn.utils.rnn.pack_padded_sequence(
                hidden, lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False
            )
            packed, _ = self.lstm(packed)
            hidden, _ = nn.utils.rnn.pad_packed_sequence(packed, batch_first=True, total_length=frames.shape[1])
        hidden = self.hidden(hidden)  # (B, S', H)
        logits = self.output(hidden).float()  # (B, S', V)
        return logits.log_softmax(dim=-1), lengths


def check_alignable(
    ids: Sequence[str], targets: Sequence[Sequence[int]], frame_lengths: torch.Tensor, frame_rate: float | None = None
) -> None:
    """DataError naming the first utterance whose units cannot fit its frames under CTC.

    CTC needs one frame per unit plus one blank frame between each pair of equal neighbours.
    """
    for utt, units, frames in zip(ids, targets, frame_lengths.tolist(), strict=True):
        repeats = sum(1 for a, b in zip(units, units[1:], strict=False) if a == b)
        needed = len(units) + repeats
        if needed > frames:
            rate = f" ({frame_rate:g} frames/s)" if frame_rate else ""
            raise DataError(
                f"utterance {utt!r} has {len(units)} units ({needed} frames needed with the blanks between "
                f"repeated units) but the head sees only {frames} frames{rate}: use fewer units "
                "(a sentencepiece tokenizer, or a larger vocab_size), no frame stacking in the head (--stride 1), "
                "or an upstream with a higher frame rate"
            )


def ctc_loss(
    log_probs: torch.Tensor,
    frame_lengths: torch.Tensor,
    targets: Sequence[Sequence[int]],
    ids: Sequence[str],
    blank: int = 0,
    frame_rate: float | None = None,
) -> torch.Tensor:
    """Mean over utterances of the CTC loss divided by the target length (torch's ``reduction='mean'``).

    ``log_probs`` (B, S, V), ``frame_lengths`` (B,), ``targets`` unit ids per utterance. An
    utterance whose units cannot be aligned to its frames is a DataError naming it.
    """
    check_alignable(ids, targets, frame_lengths, frame_rate)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)  # (B,)
    flat = torch.tensor([unit for t in targets for unit in t], dtype=torch.long)  # (sum L,)
    valid = lengths_to_mask(frame_lengths.to(log_probs.device), log_probs.shape[1]).unsqueeze(-1)  # (B, S, 1)
    log_probs = log_probs.masked_fill(~valid, 0.0)  # padding never reaches the loss; keep it finite
    return F.ctc_loss(
        log_probs.transpose(0, 1),  # (S, B, V)
        flat.to(log_probs.device),
        frame_lengths.to(log_probs.device),
        target_lengths.to(log_probs.device),
        blank=blank,
        reduction="mean",
        zero_infinity=False,
    )
