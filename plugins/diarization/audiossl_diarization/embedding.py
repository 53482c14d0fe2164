"""Any audiossl encoder as a pyannote.audio speaker-embedding model.

pyannote 4.0's ``SpeakerDiarization(embedding=...)`` passes what it gets to
``PretrainedSpeakerEmbedding``, which wraps a :class:`pyannote.audio.core.model.Model` instance in
``PyannoteAudioPretrainedSpeakerEmbedding``: that wrapper reads ``model.audio.sample_rate`` and
``model.dimension``, calls ``model(waveforms (B, 1, T), weights=masks (B, F))`` and expects (B, D),
and finds ``min_num_samples`` by calling the model on shorter and shorter noise until it raises.
A plain callable is not accepted there, so the adapter is a ``Model`` subclass,
:class:`AudiosslSpeakerEmbedding`, which also makes it usable with ``pyannote.audio.Inference``
(``window="whole"``: one embedding per file; ``"sliding"``: one per chunk).

Masks. pyannote gives, for every (chunk, local speaker), the chunk's waveform and that speaker's
activity at the segmentation model's frame rate. As pyannote's SpeechBrain and NeMo wrappers do, the
mask is stretched to the samples (nearest neighbour), the active samples are gathered into one
shorter waveform and that is embedded: the encoder never sees the other speakers' speech, and the
embedding of a masked chunk is exactly :class:`audiossl.Embedder`'s pooled embedding of the gathered
samples. A row with fewer than ``min_num_samples`` active samples gets NaN, which pyannote's
clustering ignores.

What is pooled: a trained ``audiossl sv`` run's speaker head (on its upstream's layer mix), or the
mean ("mean") or mean and standard deviation ("stats") over the frames of one encoder layer (None:
the final output), optionally minus a mean embedding (``center``, e.g. the mean over training
audio), because mean-pooled self-supervised features share a large common direction that leaves
every cosine similarity close to 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pyannote.audio.core.model import Model
from pyannote.audio.core.task import Problem, Resolution, Specifications
from torch import nn

from audiossl.downstream.trainer import load_downstream
from audiossl.embed import load, pool
from audiossl.errors import ConfigError

Pooling = Literal["mean", "stats"]


class _LayerFrames(nn.Module):
    """``(waveforms (B, T), lengths (B,)) -> (hidden (B, S, D), lengths (B,))`` from one layer, no prefix tokens."""

    def __init__(self, encoder: nn.Module, layer: int | None):
        super().__init__()
        self.encoder = encoder
        self.layer = layer

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.encoder(waveforms, lengths).without_prefix()
        hidden = output.last if self.layer is None else output.layers[self.layer]
        return hidden, output.lengths


class AudiosslSpeakerEmbedding(Model):
    """A pyannote speaker-embedding ``Model`` on an audiossl encoder; see the module doc.

    Build it with :func:`load_embedding`. ``frames`` maps padded waveforms and lengths to frame
    features and lengths; ``head`` (optional) maps those to embeddings (B, E), otherwise they are
    pooled with ``pooling``. ``duration`` is the chunk length declared to ``Inference``.
    """

    def __init__(
        self,
        frames: nn.Module,
        sample_rate: int,
        *,
        head: nn.Module | None = None,
        pooling: Pooling = "mean",
        center: np.ndarray | torch.Tensor | None = None,
        duration: float = 5.0,
    ):
        super().__init__(sample_rate=int(sample_rate), num_channels=1)
        if head is None and pooling not in ("mean", "stats"):
            raise ConfigError(f"unknown pooling {pooling!r}; known: mean, stats")
        self.frames = frames
        self.head = head
        self.pooling = pooling
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)
        self.specifications = Specifications(
            problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=float(duration)
        )
        self.eval()
        self.min_num_samples = self._probe_min_samples()
        with torch.no_grad():
            probe = self._embed(torch.randn(1, int(sample_rate)), torch.tensor([int(sample_rate)]))
        self.dimension = int(probe.shape[-1])
        if center is not None:
            center = torch.as_tensor(np.asarray(center), dtype=torch.float32).reshape(-1)
            if center.numel() != self.dimension:
                raise ConfigError(f"center has {center.numel()} values, embeddings have {self.dimension}")
        self.register_buffer("center", center, persistent=False)

    @property
    def receptive_field(self):
        """One output per chunk: pyannote's ``Inference`` asks for it even for chunk-level models."""
        from pyannote.core import SlidingWindow

        duration = self.specifications.duration
        return SlidingWindow(start=0.0, duration=duration, step=duration)

    @torch.no_grad()
    def _probe_min_samples(self) -> int:
        """Fewest samples giving at least one frame (binary search; a failure counts as too short)."""

        def works(count: int) -> bool:
            try:
                _, lengths = self.frames(torch.randn(1, count), torch.tensor([count]))
            except Exception:  # encoders fail in many ways on inputs shorter than their window
                return False
            return int(lengths[0]) >= 1

        low, high = 1, int(self.hparams.sample_rate)
        if not works(high):
            raise ConfigError("the encoder gives no frame for one second of audio")
        while low < high:
            middle = (low + high) // 2
            if works(middle):
                high = middle
            else:
                low = middle + 1
        return high

    def _embed(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) of padded waveforms (B, T) with lengths (B,)."""
        hidden, frame_lengths = self.frames(waveforms, lengths)  # (B, S, D), (B,)
        if self.head is not None:
            return self.head.embed(hidden, frame_lengths).float()
        return pool(hidden.float(), frame_lengths, self.pooling)  # (B, D) or (B, 2D)

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings (B, D) of waveforms (B, 1, T); ``weights`` (B, F): speaker activity (module doc)."""
        device = self._anchor.device
        waveforms = waveforms.to(device).float().mean(dim=1)  # (B, T)
        batch, num_samples = waveforms.shape
        if weights is None:
            if num_samples < self.min_num_samples:
                raise ValueError(f"{num_samples} samples are too few: the encoder needs {self.min_num_samples}")
            lengths = torch.full((batch,), num_samples, dtype=torch.long, device=device)
            signals = waveforms
        else:
            if weights.shape[0] != batch:
                raise ValueError(f"{weights.shape[0]} masks for {batch} waveforms")
            keep = F.interpolate(weights.to(device).float().unsqueeze(1), size=num_samples, mode="nearest")
            keep = keep.squeeze(1) > 0.5  # (B, T)
            lengths = keep.sum(dim=1)  # (B,)
            signals = torch.zeros(batch, max(int(lengths.max()), 1), device=device)  # (B, T')
            for row in range(batch):
                signals[row, : lengths[row]] = waveforms[row, keep[row]]
        embeddings = torch.full((batch, self.dimension), float("nan"), device=device)  # (B, D)
        usable = lengths >= self.min_num_samples
        if bool(usable.any()):
            longest = int(lengths[usable].max())
            embeddings[usable] = self._embed(signals[usable, :longest], lengths[usable])
        if self.center is not None:
            embeddings = embeddings - self.center
        return embeddings


def load_embedding(
    model: str | Path | nn.Module | None = None,
    *,
    sv_run: str | Path | None = None,
    layer: int | None = None,
    pooling: Pooling = "mean",
    center: np.ndarray | None = None,
    device: str | torch.device | None = "cpu",
    duration: float = 5.0,
) -> AudiosslSpeakerEmbedding:
    """The adapter for a checkpoint / run dir / imported model (``model``), or for a trained sv run (``sv_run``).

    ``model`` goes through :func:`audiossl.load` (its errors, e.g. an unknown architecture, pass
    through); ``layer`` indexes ``EncoderOutput.layers`` (negative from the end; None: the final
    output). With ``sv_run`` the run's upstream and speaker head are used and ``layer``/``pooling``
    do not apply.
    """
    if (model is None) == (sv_run is None):
        raise ConfigError("give exactly one of an encoder (model) and a trained sv run (sv_run)")
    if sv_run is not None:
        if layer is not None:
            raise ConfigError("a layer can only be chosen without an sv run (the run's head reads its layer mix)")

        trained = load_downstream(sv_run, device="cpu")
        adapter = AudiosslSpeakerEmbedding(
            trained.upstream, trained.upstream.sample_rate, head=trained.head, center=center, duration=duration
        )
    else:
        encoder = load(model, device="cpu") if isinstance(model, (str, Path)) else model
        if layer is not None:
            count = int(encoder.num_layers)
            if not -count <= layer < count:
                raise ConfigError(f"layer {layer} does not exist: the model has {count} layers (0..{count - 1})")
            layer %= count
        adapter = AudiosslSpeakerEmbedding(
            _LayerFrames(encoder.eval(), layer),
            int(encoder.sample_rate),
            pooling=pooling,
            center=center,
            duration=duration,
        )
    return adapter.to(torch.device(device) if device is not None else torch.device("cpu")).eval()
