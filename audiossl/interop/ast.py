"""Hugging Face AST (``ASTModel`` / ``ASTForAudioClassification``) directories, wrapped.

The input pipeline is transformers' own ``ASTFeatureExtractor`` (Kaldi fbank with 128 bins,
padded or cut to ``max_length`` frames, then ``(x - mean) / (2 std)`` with the dataset
statistics of its config), run on every utterance cut to its length, so each item gets what
it gets alone. AST sees a fixed-size spectrogram: audio longer than ``max_length`` frames
(10.24 s at the AudioSet settings) is cut, as transformers does.

The output has ``num_prefix_tokens`` = 2 (cls and distillation tokens) followed by the patch
grid in transformers' order, frequency-major: patch ``(f, t)`` sits at ``2 + f * time_patches + t``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from audiossl.errors import DataError
from audiossl.interop.base import ImportedEncoder
from audiossl.interop.huggingface import LayerRecorder, load_base_model


class HFASTEncoder(ImportedEncoder):
    """transformers' ASTModel with its ASTFeatureExtractor: waveforms -> EncoderOutput."""

    num_prefix_tokens = 2

    def __init__(self, model: nn.Module, extractor: object):
        super().__init__()
        self.model = model
        self.extractor = extractor
        config = model.config
        self.sample_rate = int(extractor.sampling_rate)
        self.dim = config.hidden_size
        self.num_layers = config.num_hidden_layers
        frequency_patches, time_patches = model.embeddings.get_shape(config)
        #: (frequency, time) patches of the grid that follows the prefix tokens.
        self.grid = (frequency_patches, time_patches)
        hop_seconds = 0.01  # Kaldi fbank's 10 ms frame shift, as ASTFeatureExtractor uses
        self.frame_rate = 1.0 / (hop_seconds * config.time_stride)
        self._recorder = LayerRecorder(model.encoder.layer)

    def features(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ASTFeatureExtractor's input values for every item alone: (B, max_length, num_mel_bins)."""
        items = [waveforms[b, : int(lengths[b])].detach().float().cpu().numpy() for b in range(waveforms.shape[0])]
        values = self.extractor(items, sampling_rate=self.sample_rate, return_tensors="pt")["input_values"]
        return values.to(waveforms.device)

    def run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        values = self.features(waveforms, lengths)  # (B, F, C), every item alone
        with self._recorder.record() as layers:  # L x (B, S, D)
            output = self.model(values)
        tokens = output.last_hidden_state.shape[1]
        token_lengths = torch.full((waveforms.shape[0],), tokens, dtype=torch.long, device=waveforms.device)
        return output.last_hidden_state, layers, token_lengths


def load_ast(path: Path) -> HFASTEncoder:
    """ASTModel + ASTFeatureExtractor from a local directory (extractor defaults without preprocessor_config.json)."""
    from transformers import ASTFeatureExtractor

    model = load_base_model(path, "ASTModel")
    config = model.config
    settings_file = path / "preprocessor_config.json"
    if settings_file.is_file():
        try:
            extractor = ASTFeatureExtractor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read the preprocessor config: {error}", settings_file) from None
    else:
        extractor = ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
    if extractor.num_mel_bins != config.num_mel_bins or extractor.max_length != config.max_length:
        raise DataError(
            f"preprocessor makes {extractor.max_length} x {extractor.num_mel_bins} fbank, "
            f"the model expects {config.max_length} x {config.num_mel_bins}",
            settings_file,
        )
    return HFASTEncoder(model, extractor)
