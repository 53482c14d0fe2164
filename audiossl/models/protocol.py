"""The one interface of a speech encoder seen from outside: waveforms + lengths -> EncoderOutput.

Every model users load (audiossl checkpoints, imported checkpoints, the fbank baselines) is a
:class:`SpeechEncoder`, so consumers (downstream upstreams, the embedder, export, clustering,
plugins) read ``sample_rate``, ``dim``, ``num_layers`` and ``frame_rate`` from the type instead
of probing modules for attributes.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from audiossl.encoders.base import EncoderOutput


class SpeechEncoder(nn.Module, metaclass=abc.ABCMeta):
    """``(waveforms (B, T), lengths (B,)) -> EncoderOutput``, with the numbers consumers need.

    Waveforms are mono at :attr:`sample_rate`, zero-padded after ``lengths`` samples; the
    output's ``layers`` has :attr:`num_layers` tensors of width :attr:`dim`. Subclasses provide
    the four attributes as properties, class attributes or attributes set in ``__init__``
    (imported models know them only once their config is read), and implement :meth:`forward`.
    """

    sample_rate: int
    """Rate (Hz) the waveforms must have."""

    dim: int
    """Width D of the hidden states."""

    num_layers: int
    """Hidden-state tensors L in ``EncoderOutput.layers``."""

    frame_rate: float
    """Output time steps per second of audio (prefix tokens excluded)."""

    @abc.abstractmethod
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Hidden states of every layer for a padded batch of waveforms."""
