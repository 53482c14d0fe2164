"""The mask head: a bidirectional LSTM over upstream features predicting one STFT magnitude mask per source.

SUPERB's enhancement and separation heads (s3prl ``enhancement_stft`` / ``separation_stft``)
are stacks of bidirectional LSTMs on the (weighted-sum) upstream features followed by a
linear layer per source giving a mask over the noisy or mixed magnitude spectrum; the
estimate is resynthesised with the input's phase. Ours is the same shape, smaller by default
(CPU budgets), and packs sequences so padding never reaches the valid frames.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

#: Mask nonlinearities: sigmoid (ideal ratio mask, in [0, 1]) or relu (unbounded, phase-sensitive style).
ACTIVATIONS = ("sigmoid", "relu")


class MaskHead(nn.Module):
    """(features (B, N, D), frames (B,)) -> masks (B, K, N, F), zero past each item's frames."""

    def __init__(
        self,
        dim: int,
        bins: int,
        sources: int = 1,
        hidden_dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        activation: str = "sigmoid",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.bins, self.sources, self.activation = bins, sources, activation
        self.lstm = nn.LSTM(
            dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden_dim, bins * sources)

    def forward(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        batch, length, _ = features.shape
        packed = pack_padded_sequence(features, frames.cpu(), batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=length)  # (B, N, 2H)
        logits = self.out(self.dropout(hidden)).view(batch, length, self.sources, self.bins)
        masks = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.relu(logits)
        valid = (torch.arange(length, device=features.device)[None, :] < frames.to(features.device)[:, None]).float()
        return masks.permute(0, 2, 1, 3) * valid[:, None, :, None]  # (B, K, N, F)
