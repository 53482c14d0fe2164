"""Frame features and utterance embeddings from a pretrained model, for users and writers.

:class:`Embedder` takes waveforms or audio files of any lengths, batches them by length
(sorted, packed up to ``max_batch_seconds`` of padded audio, original order restored), runs the
model on the chosen device (optionally under bf16 autocast) and returns the hidden states of the
chosen layers per utterance, with the encoder's prefix (cls) tokens removed, or pooled over the
valid frames. An utterance gives the same result alone or in a padded batch: the encoders keep
that invariant and the embedder never lets padding reach a valid frame or a pooled value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchaudio.functional

from audiossl.audio.io import load_audio
from audiossl.embed.loading import load, resolve_device
from audiossl.errors import AudioError, ConfigError, spell_option
from audiossl.models import PretrainedEncoder, SpeechEncoder
from audiossl.nn.pooling import masked_mean, masked_mean_std

logger = logging.getLogger(__name__)

#: One input: an audio file, or a mono waveform (T,) as a tensor or numpy array.
AudioInput = str | Path | torch.Tensor | np.ndarray
#: Which hidden states: None = ``EncoderOutput.last`` (after the final norm), an index or list of
#: indices into ``EncoderOutput.layers`` (negative from the end), or "all" = every block's output.
LayerSpec = int | Sequence[int] | Literal["all"] | None
POOLINGS = (None, "mean", "stats")
#: The command-line spelling of ``on_rate_mismatch`` (``audiossl extract``).
RATE_MISMATCH_FLAG = "--rate-mismatch"


@dataclass
class Embeddings:
    """What :meth:`Embedder.embed` returns, in input order.

    Without pooling ``features`` is a list with one tensor per utterance: (S_i, D) for one
    layer (``layers`` None or an int), (L, S_i, D) for a list of layers or "all". With pooling it
    is one tensor (N, D) or (N, L, D) for "mean", twice as wide (mean then standard deviation)
    for "stats". ``lengths`` (N,) are the valid frames of every utterance (prefix tokens
    excluded). ``layers`` are the resolved indices into ``EncoderOutput.layers`` (None: last).
    Tensors are float32 on the CPU.
    """

    features: list[torch.Tensor] | torch.Tensor
    lengths: torch.Tensor
    layers: list[int] | None
    pooling: str | None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        """Features of utterance ``index``."""
        return self.features[index]


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (..., B, S, D) over the valid frames of every item (lengths (B,)) -> (..., B, D) or (..., B, 2D).

    "stats" is the mean and the population standard deviation (x-vector statistics pooling).
    """
    if pooling == "mean":
        return masked_mean(hidden, lengths)
    if pooling == "stats":
        return masked_mean_std(hidden, lengths, eps=0.0)  # (..., B, 2D)
    raise ConfigError(f"unknown pooling {pooling!r}; known: none, mean, stats")


def length_batches(lengths: Sequence[int], max_samples: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size (B x longest) stays <= ``max_samples``.

    Longest first, so the first batch shows at once whether the largest one fits in memory.
    A single utterance longer than ``max_samples`` forms a batch on its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= max_samples:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


class Embedder:
    """Runs a pretrained model over audio; see the module doc.

    ``model``: a :class:`~audiossl.models.SpeechEncoder`, e.g. what :func:`audiossl.load` returns
    (it is moved to ``device``), or a path to load. ``device`` None: CUDA when
    available. ``dtype`` torch.bfloat16: the encoder runs under bf16 autocast (the input pipeline
    stays float32). ``max_batch_seconds``: padded audio per batch. ``on_rate_mismatch``:
    "resample" (with a warning, logged) or "error" when audio does not have the model's rate.
    """

    def __init__(
        self,
        model: SpeechEncoder | str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch_seconds: float = 200.0,
        on_rate_mismatch: Literal["resample", "error"] = "resample",
    ):
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ConfigError(f"dtype must be None, torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        if max_batch_seconds <= 0:
            option = spell_option("max_batch_seconds", flag="--batch-seconds")
            raise ConfigError(f"{option} must be positive, got {max_batch_seconds}")
        if on_rate_mismatch not in ("resample", "error"):
            option = spell_option("on_rate_mismatch", flag=RATE_MISMATCH_FLAG)
            raise ConfigError(f"{option} must be 'resample' or 'error', got {on_rate_mismatch!r}")
        self.device = resolve_device(device)
        if isinstance(model, (str, Path)):
            model = load(model, device=self.device)
        if not isinstance(model, SpeechEncoder):
            raise ConfigError(f"the model ({type(model).__name__}) is not an audiossl.models.SpeechEncoder")
        self.model: SpeechEncoder = model.to(self.device).eval()
        self.dtype = None if dtype == torch.float32 else dtype
        self.max_batch_seconds = max_batch_seconds
        self.on_rate_mismatch = on_rate_mismatch

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) the model reads."""
        return self.model.sample_rate

    # ------------------------------------------------------------------------------ inputs

    def _read(self, item: AudioInput, sample_rate: int | None, position: int) -> tuple[torch.Tensor, int, str]:
        """One input as (mono float32 waveform (T,), its rate, a name for messages)."""
        if isinstance(item, (str, Path)):
            waveform, rate = load_audio(item)
            return waveform, rate, str(item)
        if sample_rate is None:
            raise ConfigError(
                f"input {position} is a waveform: give its sample_rate (the model reads {self.sample_rate} Hz)"
            )
        waveform = torch.as_tensor(item)
        name = f"input {position}"
        if waveform.dim() != 1:
            raise AudioError(f"{name}: expected a mono waveform (T,), got shape {tuple(waveform.shape)}")
        if waveform.numel() == 0:
            raise AudioError(f"{name}: no audio samples")
        if not bool(torch.isfinite(waveform).all()):
            raise AudioError(f"{name}: the waveform has NaN or Inf samples")
        return waveform.float(), int(sample_rate), name

    def conform_rates(
        self,
        items: Sequence[tuple[torch.Tensor, int, str]],
        warn: bool = True,
        describe: Callable[[str], str] | None = None,
    ) -> list[torch.Tensor]:
        """Waveforms (T,) at the model's rate: others are resampled (one logged warning unless ``warn``
        is False) or refused (``on_rate_mismatch``). ``describe`` turns the name of the input the
        message cites into a fuller one (an utterance id into its wav.scp line and audio file)."""
        off = [(rate, name) for _, rate, name in items if rate != self.sample_rate]
        if off:
            rate, name = off[0]
            if describe is not None:
                name = describe(name)
            message = f"{len(off)} input(s) are not at the model's {self.sample_rate} Hz (e.g. {name} at {rate} Hz)"
            if self.on_rate_mismatch == "error":
                resample = spell_option("on_rate_mismatch", "resample", flag=RATE_MISMATCH_FLAG)
                raise AudioError(f"{message}; resample the audio, or use {resample}")
            if warn:
                refuse = spell_option("on_rate_mismatch", "error", flag=RATE_MISMATCH_FLAG)
                logger.warning("%s; resampling them to %d Hz (%s refuses them)", message, self.sample_rate, refuse)
        return [
            w if rate == self.sample_rate else torchaudio.functional.resample(w, rate, self.sample_rate)
            for w, rate, _ in items
        ]

    def load_inputs(
        self, inputs: AudioInput | Sequence[AudioInput], sample_rate: int | None = None
    ) -> list[torch.Tensor]:
        """Every input as a waveform (T,) at the model's rate (files read, arrays converted, rates fixed)."""
        if isinstance(inputs, (str, Path)) or (isinstance(inputs, (torch.Tensor, np.ndarray)) and inputs.ndim == 1):
            inputs = [inputs]
        elif isinstance(inputs, (torch.Tensor, np.ndarray)):
            if inputs.ndim != 2:
                raise AudioError(f"expected waveforms (N, T) or a list of (T,), got shape {tuple(inputs.shape)}")
            inputs = list(inputs)
        return self.conform_rates([self._read(item, sample_rate, i) for i, item in enumerate(inputs)])

    # ----------------------------------------------------------------------------- forward

    def _resolve_layers(self, layers: LayerSpec) -> list[int] | None:
        if layers is None:
            return None
        count = self.model.num_layers
        if isinstance(layers, str):
            if layers != "all":
                raise ConfigError(f"layers must be None, an int, a list of ints or 'all', got {layers!r}")
            return list(range(count))
        chosen = [layers] if isinstance(layers, int) else list(layers)
        if not chosen:
            raise ConfigError("layers is an empty list")
        resolved = []
        for layer in chosen:
            if not -count <= int(layer) < count:
                raise ConfigError(f"layer {layer} does not exist: the model has {count} layers (0..{count - 1})")
            resolved.append(int(layer) % count)
        return resolved

    @torch.no_grad()
    def forward_batch(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, layers: list[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (L or 1, B, S, D) of the chosen layers without prefix tokens, and frame lengths (B,)."""
        waveforms, lengths = waveforms.to(self.device), lengths.to(self.device)
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)
        if isinstance(self.model, PretrainedEncoder):  # the front-end stays float32
            features, feature_lengths = self.model.inputs(waveforms, lengths)
            with autocast:
                output = self.model.encoder(features, feature_lengths)
        else:
            with autocast:
                output = self.model(waveforms, lengths)
        output = output.without_prefix()
        chosen = [output.last] if layers is None else [output.layers[i] for i in layers]
        return torch.stack(chosen).float(), output.lengths  # (L, B, S, D), (B,)

    def embed(
        self,
        waveforms_or_paths: AudioInput | Sequence[AudioInput],
        sample_rate: int | None = None,
        layers: LayerSpec = None,
        pooling: Literal["mean", "stats"] | None = None,
    ) -> Embeddings:
        """Features of every input (see :class:`Embeddings`); ``sample_rate`` is that of waveform inputs."""
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; known: none, mean, stats")
        resolved = self._resolve_layers(layers)
        squeeze = resolved is None or isinstance(layers, int)
        waveforms = self.load_inputs(waveforms_or_paths, sample_rate)
        results: list[torch.Tensor | None] = [None] * len(waveforms)
        frame_lengths = torch.zeros(len(waveforms), dtype=torch.long)
        max_samples = int(self.max_batch_seconds * self.sample_rate)
        for batch in length_batches([w.shape[0] for w in waveforms], max_samples):
            lengths = torch.tensor([waveforms[i].shape[0] for i in batch])  # (B,)
            padded = torch.zeros(len(batch), int(lengths.max()))  # (B, T)
            for row, i in enumerate(batch):
                padded[row, : lengths[row]] = waveforms[i]
            hidden, out_lengths = self.forward_batch(padded, lengths, resolved)  # (L, B, S, D), (B,)
            pooled = None if pooling is None else pool(hidden, out_lengths, pooling).cpu()  # (L, B, D')
            for row, i in enumerate(batch):
                frame_lengths[i] = int(out_lengths[row])
                value = pooled[:, row] if pooled is not None else hidden[:, row, : frame_lengths[i]].cpu()
                results[i] = value[0] if squeeze else value.contiguous()
        features: list[torch.Tensor] | torch.Tensor = list(results)  # type: ignore[arg-type]
        if pooling is not None:
            features = torch.stack(features) if features else torch.zeros(0)
        return Embeddings(features, frame_lengths, resolved, pooling)
