"""The upstream of a downstream task: a pretrained encoder (or a baseline) seen through a layer mix.

:class:`Upstream` maps padded waveforms to one (B, S, D) feature sequence with its lengths.
It wraps any module ``(waveforms (B, T), lengths (B,)) -> EncoderOutput`` that has a
``sample_rate`` (an audiossl checkpoint through :func:`~audiossl.models.load_pretrained`, or
what :func:`audiossl.load` returns) and mixes all its layers with a learned
:class:`~audiossl.downstream.featurizer.WeightedLayerSum` (s3prl's featurizer, SUPERB).

Two modes, as in SUPERB and its fine-tuning follow-ups:

* ``frozen``: the encoder never gets gradients and stays in eval mode; only the layer
  weights (and the task's head) learn.
* ``finetune``: gradients flow into the encoder, except during the first ``freeze_steps``
  optimizer steps (the head settles before it disturbs the encoder); the trainer reports the
  step with :meth:`Upstream.set_step`.

Upstream specs (:func:`load_upstream`): a checkpoint file or a pretraining run dir;
``random:<checkpoint>`` for the same architecture and input pipeline with random weights;
``fbank[:RATE[:BINS]]`` for no encoder at all: Kaldi fbank (80 bins at 16 kHz by default)
with per-utterance mean and variance normalisation, the usual baseline; ``fbank-raw[:RATE[:BINS]]``
the same log mel energies without that normalisation. Utterance CMVN makes every utterance's
mean (and variance) of every bin the same, so mean or mean+std pooling of ``fbank`` carries
nothing: utterance-level tasks (emotion, speaker) compare against ``fbank-raw``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from audiossl.downstream.featurizer import WeightedLayerSum
from audiossl.embed import load as load_model
from audiossl.errors import ConfigError, DataError
from audiossl.models import FbankBaseline, SpeechEncoder, load_pretrained

Mode = Literal["frozen", "finetune"]
MODES = ("frozen", "finetune")


class Upstream(nn.Module):
    """``(waveforms (B, T), lengths (B,)) -> (hidden (B, S, D), lengths (B,))`` from an encoder's layers.

    ``encoder`` is a :class:`~audiossl.models.SpeechEncoder`; its ``sample_rate``, ``dim``,
    ``num_layers`` and ``frame_rate`` (frames per second of ``hidden``) are the upstream's. Prefix
    (cls) tokens are dropped. ``spec`` records where the encoder came from (for the run config).
    """

    def __init__(self, encoder: SpeechEncoder, *, mode: Mode = "frozen", freeze_steps: int = 0, spec: str = ""):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"upstream mode must be one of {', '.join(MODES)}, got {mode!r}")
        if freeze_steps < 0:
            raise ConfigError(f"freeze_steps must be >= 0, got {freeze_steps}")
        if not isinstance(encoder, SpeechEncoder):
            raise ConfigError(f"the upstream encoder ({type(encoder).__name__}) is not a SpeechEncoder")
        self.encoder = encoder
        self.mode = mode
        self.freeze_steps = freeze_steps if mode == "finetune" else 0
        self.spec = spec
        self.sample_rate = int(encoder.sample_rate)
        self.num_layers = int(encoder.num_layers)
        self.dim = int(encoder.dim)
        self.frame_rate = float(encoder.frame_rate)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)
        self.featurizer = WeightedLayerSum(self.num_layers) if self.num_layers > 1 else None
        mixed = self.num_layers if self.featurizer is not None else 1
        # per-layer, per-dimension standardisation of the frozen features (identity until estimated)
        self.register_buffer("feature_mean", torch.zeros(mixed, self.dim))
        self.register_buffer("feature_std", torch.ones(mixed, self.dim))
        self.step = 0
        self.feature_cache = None  # set by the trainer while a finished run fits its reference probe
        if mode == "frozen":
            self.encoder.requires_grad_(False)
        self.train(False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def encoder_frozen(self) -> bool:
        """True when the encoder gets no gradient now (frozen mode, or within ``freeze_steps``)."""
        return self.mode == "frozen" or self.step < self.freeze_steps

    def set_step(self, step: int) -> None:
        """Tell the upstream which optimizer step comes next (ends the ``freeze_steps`` phase)."""
        self.step = step
        self.train(self.training)

    def train(self, mode: bool = True) -> Upstream:
        """Like ``nn.Module.train``, but a frozen encoder always stays in eval mode (no dropout)."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The encoder's trainable parameters (empty in frozen mode)."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def featurizer_parameters(self) -> list[nn.Parameter]:
        """The layer weights (empty for a one-layer upstream such as fbank)."""
        return [] if self.featurizer is None else list(self.featurizer.parameters())

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, lengths = waveforms.to(self.device), lengths.to(self.device)
        layers, lengths = self.layers(waveforms, lengths)  # L x (B, S, D)
        hidden = layers[0] if self.featurizer is None else self.featurizer(layers)  # (B, S, D)
        return hidden, lengths

    def layers(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The standardised features the layer mix reads: L tensors (B, S, D) and lengths (B,).

        Every block's output when the encoder has several layers (the weighted sum's inputs),
        else the one final output; each standardised with :attr:`feature_mean` / :attr:`feature_std`.
        """
        waveforms, lengths = waveforms.to(self.device), lengths.to(self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            output = self.encoder(waveforms, lengths).without_prefix()
        raw = output.layers if self.featurizer is not None else [output.last]
        mean, std = self.feature_mean.to(raw[0].dtype), self.feature_std.to(raw[0].dtype)
        return [(layer - mean[i]) / std[i] for i, layer in enumerate(raw)], output.lengths

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-layer statistics (L', D) that :meth:`layers` removes (:mod:`audiossl.downstream.standardize`)."""
        if mean.shape != self.feature_mean.shape or std.shape != self.feature_std.shape:
            shape = tuple(self.feature_mean.shape)
            raise ConfigError(f"standardisation statistics {tuple(mean.shape)} do not fit {shape}")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What a downstream checkpoint must keep: the layer weights, plus the encoder when it changed.

        A frozen pretrained encoder is reloaded from its spec, so it is not copied into every
        checkpoint; a fine-tuned or randomly initialised one is.
        """
        state = self.state_dict()
        if self.mode == "frozen" and not self.spec.startswith("random:"):
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        return state

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`checkpoint_state` (a frozen encoder keeps the weights it was built with)."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        # runs from before standardisation have no statistics: they keep the identity
        missing = [k for k in missing if not k.startswith("encoder.") and k not in ("feature_mean", "feature_std")]
        if missing or unexpected:
            raise DataError(f"upstream weights do not match this upstream (missing {missing}, unexpected {unexpected})")


def parse_fbank_spec(spec: str) -> tuple[int, int, bool] | None:
    """``fbank[:RATE[:BINS]]`` / ``fbank-raw[...]`` -> (sample rate, bins, utterance CMVN); None for other specs."""
    name, *rest = spec.split(":")
    if name not in ("fbank", "fbank-raw"):
        return None
    try:
        rate = int(rest[0]) if rest else 16000
        bins = int(rest[1]) if len(rest) > 1 else (80 if rate >= 16000 else 64)
    except ValueError:
        raise ConfigError(f"upstream {spec!r}: expected fbank[-raw][:SAMPLE_RATE[:NUM_MEL_BINS]]") from None
    if len(rest) > 2:
        raise ConfigError(f"upstream {spec!r}: expected fbank[-raw][:SAMPLE_RATE[:NUM_MEL_BINS]]")
    return rate, bins, name == "fbank"


def canonical_spec(spec: str) -> str:
    """The spec with checkpoint paths made absolute, so a run's config works from any directory."""
    if parse_fbank_spec(spec) is not None:
        return spec
    prefix, path = ("random:", spec[len("random:") :]) if spec.startswith("random:") else ("", spec)
    return prefix + str(Path(path).resolve()) if Path(path).exists() else spec


def load_encoder(spec: str, *, seed: int = 0) -> SpeechEncoder:
    """The module behind an upstream spec (see the module docstring), in eval mode on the CPU."""
    fbank = parse_fbank_spec(spec)
    if fbank is not None:
        return FbankBaseline(*fbank)
    if spec.startswith("random:"):
        return load_pretrained(spec[len("random:") :], random_init=True, seed=seed)
    if not Path(spec).exists():
        raise DataError("upstream not found: expected a checkpoint, a run dir, random:<checkpoint> or fbank", spec)
    # audiossl.load reads audiossl checkpoints (through load_pretrained) and imported formats
    return load_model(spec, device="cpu")


def load_upstream(spec: str, mode: Mode = "frozen", freeze_steps: int = 0, *, seed: int = 0) -> Upstream:
    """An :class:`Upstream` from a spec string (checkpoint, run dir, ``random:<ckpt>``, ``fbank``).

    ``seed`` initialises the weights of ``random:`` upstreams. Loading does not touch torch's
    global random state beyond what :func:`~audiossl.models.load_pretrained` does, so callers
    seed their run after this call.
    """
    spec = canonical_spec(spec)
    return Upstream(load_encoder(spec, seed=seed), mode=mode, freeze_steps=freeze_steps, spec=spec)
