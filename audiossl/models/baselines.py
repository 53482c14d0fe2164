"""Encoders without training: Kaldi fbank features as a one-layer :class:`SpeechEncoder` (the usual baseline)."""

from __future__ import annotations

import torch

from audiossl.audio.frontends import create_frontend
from audiossl.audio.normalize import cmvn
from audiossl.encoders.base import EncoderOutput
from audiossl.models.protocol import SpeechEncoder
from audiossl.nn.masking import lengths_to_padding_mask


class FbankBaseline(SpeechEncoder):
    """Kaldi fbank (+ utterance CMVN when ``normalize``) as a one-layer encoder returning EncoderOutput."""

    def __init__(self, sample_rate: int = 16000, num_mel_bins: int = 80, normalize: bool = True):
        super().__init__()
        self.normalize = normalize
        self._sample_rate = sample_rate
        self.frontend = create_frontend("fbank", {"sample_rate": sample_rate, "num_mel_bins": num_mel_bins})
        self._dim = num_mel_bins

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def num_layers(self) -> int:
        return 1

    @property
    def frame_rate(self) -> float:
        return self._sample_rate / self.frontend.frame_shift

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        features, frame_lengths = self.frontend(waveforms.float(), lengths)  # (B, F, C), (B,)
        if self.normalize:
            features = cmvn(features, frame_lengths)
        padding = lengths_to_padding_mask(frame_lengths.to(features.device), features.shape[1])  # (B, F)
        return EncoderOutput(last=features, layers=[features], lengths=frame_lengths, padding_mask=padding)
