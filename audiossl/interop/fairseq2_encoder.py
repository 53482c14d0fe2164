"""fairseq2's wav2vec2 front-end + encoder wrapped as an audiossl encoder, and built from a state dict.

The one model every fairseq input ends in: fairseq2 checkpoints and model cards
(:mod:`audiossl.interop.fairseq2`) and fairseq1 checkpoints (:mod:`audiossl.interop.fairseq1`)
both build it here, so neither format module imports the other's loader. fairseq2 itself is
imported inside the functions that need it: importing it takes seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from audiossl.errors import DataError
from audiossl.interop.base import ImportedEncoder, load_weights

#: Parts of fairseq2's Wav2Vec2Model an encoder needs (the quantizer and projections are for pretraining).
ENCODER_PREFIXES = ("encoder_frontend.", "encoder.")


class Fairseq2Wav2Vec2Encoder(ImportedEncoder):
    """fairseq2's wav2vec2 front-end + Transformer encoder as an audiossl encoder (wrapped).

    ``exact_padding`` as in :class:`~audiossl.interop.torchaudio.TorchaudioEncoder`.
    """

    def __init__(self, model: nn.Module, config: object, *, sample_rate: int = 16000, normalize_waveform: bool = False):
        super().__init__()
        self.encoder_frontend = model.encoder_frontend.eval()
        self.encoder = model.encoder.eval()
        encoder_config = config.encoder_config
        #: fairseq2's Wav2Vec2Config (what :mod:`audiossl.interop.convert` reads the architecture from).
        self.fairseq2_config = config
        self.sample_rate = sample_rate
        self.normalize_waveform = normalize_waveform
        self.dim = encoder_config.model_dim
        self.num_layers = encoder_config.num_encoder_layers
        strides = [stride for _, _, stride in encoder_config.feature_extractor_layer_descs]
        self.frame_rate = sample_rate / float(torch.tensor(strides).prod())
        # Padding reaches valid frames through a group norm over time in the first convolution, and
        # through stacked positional convolutions (fairseq2 zeroes padding only before the first).
        self.padding_leaks = (
            not encoder_config.feature_extractor_layer_norm_convs or encoder_config.pos_encoder_depth > 1
        )
        self.exact_padding = True
        self._layers: list[torch.Tensor] | None = None  # a list only while run records
        self.encoder.register_layer_hook(self._record)

    def _record(self, layer_idx: int, layer_output: torch.Tensor, layout: object, num_layers: int) -> bool:
        if self._layers is not None:
            self._layers.append(layer_output)
        return True  # run every layer

    def run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        from fairseq2.nn import BatchLayout

        layout = BatchLayout(tuple(waveforms.shape), lengths.tolist(), device=waveforms.device)
        seqs, layout, _ = self.encoder_frontend.extract_features(waveforms, layout)  # (B, S, C)
        seqs, _ = self.encoder_frontend.process_features(seqs, layout)  # (B, S, D)
        self._layers = layers = []  # L x (B, S, D)
        try:
            last = self.encoder(seqs, layout)
        finally:
            self._layers = None
        frame_lengths = torch.as_tensor(list(layout.seq_lens), dtype=torch.long, device=waveforms.device)
        return last, layers, frame_lengths


def build_encoder(
    config: object,
    state_dict: Mapping[str, object],
    path: Path,
    *,
    sample_rate: int = 16000,
    normalize_waveform: bool = False,
) -> Fairseq2Wav2Vec2Encoder:
    """fairseq2's Wav2Vec2Model from ``config``, with the front-end and encoder weights of ``state_dict``."""
    from fairseq2.models.wav2vec2 import create_wav2vec2_model

    if config.encoder_config.use_fbank:
        raise DataError("fbank-input wav2vec2 models (w2v-BERT style) are not supported; only waveform input", path)
    model = create_wav2vec2_model(config)
    parts = nn.ModuleDict({"encoder_frontend": model.encoder_frontend, "encoder": model.encoder})
    weights = {k: v for k, v in state_dict.items() if k.startswith(ENCODER_PREFIXES)}
    load_weights(parts, weights, path, "fairseq2 wav2vec2 encoder")
    return Fairseq2Wav2Vec2Encoder(model, config, sample_rate=sample_rate, normalize_waveform=normalize_waveform)
