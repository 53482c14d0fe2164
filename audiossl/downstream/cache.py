"""A memory cache of a frozen upstream's standardised layers, per utterance, for the epochs after the first.

A frozen encoder in eval mode maps an utterance to the same layers at every epoch, yet the
trainer would run it again for every batch: on a CPU that is nearly all of a probe's training
time. :class:`FeatureCache` keeps each utterance's valid frames (L, S_i, D) once computed and
rebuilds padded batches from them, so later epochs cost only the head. It is used only where it
is exact: frozen mode, whole utterances (no random crops), and within a memory budget (items
beyond it are computed as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FeatureCache:
    """Utterance id -> standardised layers (L, S_i, D) on the CPU, up to ``max_bytes``."""

    def __init__(self, max_bytes: float):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.items)

    def get(self, ids: Sequence[str], device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        """The padded layers (L x (B, S, D)) and lengths (B,) of ``ids`` when every one is cached, else None."""
        found = [self.items.get(utt) for utt in ids]
        if any(item is None for item in found):
            self.misses += 1
            return None
        self.hits += 1
        lengths = torch.tensor([item.shape[1] for item in found], dtype=torch.long)
        width = int(lengths.max()) if len(found) else 0
        layers, _, dim = found[0].shape
        padded = torch.zeros(layers, len(found), width, dim, dtype=found[0].dtype)
        for row, item in enumerate(found):
            padded[:, row, : item.shape[1]] = item
        return list(padded.to(device).unbind(0)), lengths.to(device)

    def put(self, ids: Sequence[str], layers: Sequence[torch.Tensor], lengths: torch.Tensor) -> None:
        """Keep each item's valid frames of L x (B, S, D) (until the budget is spent)."""
        stacked = torch.stack([layer.detach() for layer in layers])  # (L, B, S, D)
        for row, utt in enumerate(ids):
            if utt in self.items:
                continue
            item = stacked[:, row, : int(lengths[row])].to("cpu", copy=True)
            size = item.numel() * item.element_size()
            if self.bytes + size > self.max_bytes:
                return
            self.items[utt] = item
            self.bytes += size
