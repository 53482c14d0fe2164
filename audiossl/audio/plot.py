"""Spectrogram pictures for eyeballing features (``audiossl features plot``)."""

from __future__ import annotations

from pathlib import Path

import torch

from audiossl.fileio import atomic_path


def plot_features(
    features: torch.Tensor,
    path: str | Path,
    title: str | None = None,
    mask: torch.Tensor | None = None,
) -> Path:
    """Write features (F, C) of one utterance as a spectrogram PNG (time across, channels up), atomically.

    ``mask`` (F,) or (F, C) bool marks cells to hatch in red (e.g. SpecAugment or MSPM masks).
    Uses matplotlib's Agg backend, so no display is needed. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if features.dim() != 2:
        raise ValueError(f"expected features (F, C), got shape {tuple(features.shape)}")
    values = features.detach().float().cpu().numpy().T  # (C, F)
    frames, channels = features.shape
    figure = Figure(figsize=(max(4.0, min(16.0, frames / 50.0)), 3.5), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(values, origin="lower", aspect="auto", interpolation="nearest", cmap="magma")
    figure.colorbar(image, ax=axes)
    if mask is not None:
        mask = mask.detach().bool().cpu()
        if mask.dim() == 1:
            mask = mask.unsqueeze(1).expand(frames, channels)
        if mask.shape != features.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(features.shape)}")
        overlay = torch.zeros(channels, frames, 4)  # (C, F, RGBA)
        overlay[..., 0] = 1.0
        overlay[..., 3] = mask.T.float() * 0.45
        axes.imshow(overlay.numpy(), origin="lower", aspect="auto", interpolation="nearest")
    axes.set_xlabel("frame")
    axes.set_ylabel("channel")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
