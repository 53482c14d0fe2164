"""The CTC head: upstream frames (B, S, D) -> log-probabilities over units (B, S, V), and its loss.

A linear projection is the SUPERB-style probe of what the frames already encode; ``mlp`` adds
one hidden layer, and ``bilstm`` a small bidirectional LSTM (SUPERB's ASR downstream uses a
2-layer BiLSTM) that can also model context across frames. The head never changes the frame
rate, so output lengths equal input lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.nn.masking import lengths_to_mask

HEAD_KINDS = ("linear", "mlp", "bilstm")


@dataclass(kw_only=True)
class CTCHeadConfig:
    """Shape of the CTC head."""

    kind: str = "linear"
    """'linear', 'mlp' (one hidden layer with GELU) or 'bilstm' (bidirectional LSTM, then linear)."""
    hidden: int = 256
    """Hidden size of the MLP, or of each LSTM direction."""
    layers: int = 2
    """Number of LSTM layers (bilstm only)."""
    dropout: float = 0.1
    """Dropout on the head's input (and between LSTM layers)."""

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ConfigError(f"unknown CTC head kind {self.kind!r}; choose one of {', '.join(HEAD_KINDS)}")
        if self.hidden < 1 or self.layers < 1:
            raise ConfigError("hidden and layers must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


class CTCHead(nn.Module):
    """Frames (B, S, D) + lengths (B,) -> log-probabilities (B, S, V) + the same lengths."""

    def __init__(self, dim: int, vocab_size: int, config: CTCHeadConfig | None = None):
        super().__init__()
        self.config = config = config or CTCHeadConfig()
        self.vocab_size = vocab_size
        self.dropout = nn.Dropout(config.dropout)
        self.lstm: nn.LSTM | None = None
        self.hidden: nn.Module = nn.Identity()
        out_dim = dim
        if config.kind == "mlp":
            self.hidden = nn.Sequential(nn.Linear(dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout))
            out_dim = config.hidden
        elif config.kind == "bilstm":
            self.lstm = nn.LSTM(
                dim,
                config.hidden,
                num_layers=config.layers,
                batch_first=True,
                bidirectional=True,
                dropout=config.dropout if config.layers > 1 else 0.0,
            )
            out_dim = 2 * config.hidden
        self.output = nn.Linear(out_dim, vocab_size)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.dropout(frames)
        if self.lstm is not None:
            # Packing keeps the backward direction from reading padding.
            packed = nn.utils.rnn.pack_padded_sequence(
                hidden, lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False
            )
            packed, _ = self.lstm(packed)
            hidden, _ = nn.utils.rnn.pad_packed_sequence(packed, batch_first=True, total_length=frames.shape[1])
        hidden = self.hidden(hidden)  # (B, S, H)
        logits = self.output(hidden).float()  # (B, S, V)
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
                f"repeated units) but the upstream gives only {frames} frames{rate}: use fewer units "
                "(a sentencepiece tokenizer, or a larger vocab_size), or an upstream with a higher frame rate"
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
