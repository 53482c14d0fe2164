"""The front-end interface: waveforms + lengths in, features + frame lengths out.

Every front-end (Kaldi fbank, librosa log-mel, MFCC, the wav2vec2 waveform CNN) is an
``nn.Module`` built from a config dataclass and registered by name in :data:`FRONTENDS`,
so configs and the CLI can pick one by name. ``output_lengths`` gives the exact number of
frames for a number of samples without running the front-end (samplers and encoders use
it to plan token counts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from audiossl.registry import Registry


class Frontend(nn.Module):
    """Base class: ``forward(waveforms (B, T), lengths (B,)) -> (features (B, F, C), frame_lengths (B,))``.

    ``lengths`` are valid samples per item; ``frame_lengths`` are valid frames. Features
    at padding frames (``f >= frame_lengths[b]``) are zero, and valid frames never depend
    on the padding or on the other items of the batch (unless the front-end says otherwise,
    like the group-norm CNN).
    """

    #: Number of feature channels C (mel bins, cepstra, conv channels).
    num_channels: int
    #: Samples between the starts of consecutive frames (the hop).
    frame_shift: int

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of frames (B,) the front-end produces for inputs of ``lengths`` samples (B,)."""
        raise NotImplementedError


@dataclass(frozen=True)
class FrontendSpec:
    """A registered front-end: its config class and the factory that builds it from a config."""

    name: str
    config_class: type
    factory: Callable[..., Frontend]
    learnable: bool = False


#: Registry of front-ends by name ("fbank", "log_mel", "mfcc", "wav2vec2_cnn").
FRONTENDS: Registry[FrontendSpec] = Registry("front-end")


def register_frontend(name: str, config_class: type, learnable: bool = False) -> Callable[[type], type]:
    """Class decorator: register a :class:`Frontend` subclass built as ``cls(config)``."""

    def decorator(cls: type) -> type:
        FRONTENDS.register(name)(FrontendSpec(name, config_class, cls, learnable))
        return cls

    return decorator
