"""Hugging Face transformers Wav2Vec2 / HuBERT / WavLM / AST directories, wrapped.

A ``save_pretrained`` directory (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``, optionally ``preprocessor_config.json``) is read offline
(``local_files_only=True``, no remote code) into transformers' own model, so the hidden states
are transformers' to the last bit. Heads (``...ForCTC``, ``ASTForAudioClassification``) are
dropped; their base model is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from audiossl.errors import DataError
from audiossl.interop.ast import load_ast
from audiossl.interop.base import ImportedEncoder, Importer, register_importer
from audiossl.interop.huggingface import (  # noqa: F401  (LayerRecorder, read_config: their old import path)
    AST_MODEL_TYPE,
    OPTIONAL_KEYS,
    WEIGHT_FILES,
    LayerRecorder,
    load_base_model,
    read_config,
)

#: config.json ``model_type`` -> transformers base-model class name, for the speech models.
SPEECH_MODELS = {
    "wav2vec2": "Wav2Vec2Model",
    "hubert": "HubertModel",
    "wavlm": "WavLMModel",
    "wav2vec2-conformer": "Wav2Vec2ConformerModel",
    "data2vec-audio": "Data2VecAudioModel",
    "unispeech": "UniSpeechModel",
    "unispeech-sat": "UniSpeechSatModel",
}
#: Families whose padded batches are exact in transformers when the feature extractor uses layer
#: norm (checked by the tests). The others (conformer convolutions, data2vec's stacked positional
#: convolutions, unverified families) run unequal lengths item by item.
BATCH_EXACT = ("wav2vec2", "hubert", "wavlm")


class HFSpeechEncoder(ImportedEncoder):
    """transformers' Wav2Vec2Model / HubertModel / WavLMModel (and kin, :data:`SPEECH_MODELS`), wrapped.

    ``layers`` are the block outputs (before the final norm of stable-layer-norm models,
    which ``last`` has). ``exact_padding`` as in :class:`~audiossl.interop.torchaudio.TorchaudioEncoder`:
    models whose padded batches are not exact (``padding_leaks``: group-norm feature extractors,
    families outside :data:`BATCH_EXACT`) are run item by item on unequal lengths.
    """

    def __init__(self, model: nn.Module, *, sample_rate: int, normalize_waveform: bool):
        super().__init__()
        self.model = model
        config = model.config
        self.sample_rate = sample_rate
        self.normalize_waveform = normalize_waveform
        self.dim = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.frame_rate = sample_rate / float(torch.tensor(config.conv_stride).prod())
        norm = getattr(config, "feat_extract_norm", "layer")  # data2vec-audio: layer norm, no field
        #: Whether a padded batch would differ from items alone (then items run alone, see exact_padding).
        self.padding_leaks = norm == "group" or config.model_type not in BATCH_EXACT
        self.exact_padding = True
        self._recorder = LayerRecorder(model.encoder.layers)

    def run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        sample_mask = torch.arange(waveforms.shape[1], device=lengths.device) < lengths[:, None]  # (B, T)
        with self._recorder.record() as layers:  # L x (B, S, D)
            output = self.model(waveforms, attention_mask=sample_mask.long())
        frame_lengths = self.model._get_feat_extract_output_lengths(lengths).long()
        return output.last_hidden_state, layers, frame_lengths


def _preprocessing(path: Path, config: dict) -> tuple[int, bool]:
    """Sample rate and input normalisation from preprocessor_config.json.

    Without that file, transformers' conversion convention applies: layer-norm feature
    extractors (large-lv60k-style) were trained on normalised audio, group-norm ones were not.
    """
    file = path / "preprocessor_config.json"
    if file.is_file():
        try:
            settings = json.loads(file.read_text())
        except ValueError as error:
            raise DataError(f"cannot read the preprocessor config: {error}", file) from None
        return int(settings.get("sampling_rate", 16000)), bool(settings.get("do_normalize", True))
    return 16000, config.get("feat_extract_norm", "layer") == "layer"


def load_transformers(path: Path) -> ImportedEncoder:
    """Load a Hugging Face directory by its ``model_type``; unknown types are a :class:`DataError`."""
    config = read_config(path)
    model_type = config.get("model_type")
    if model_type == AST_MODEL_TYPE:
        return load_ast(path)
    if model_type not in SPEECH_MODELS:
        known = ", ".join([*SPEECH_MODELS, AST_MODEL_TYPE])
        architectures = ", ".join(config.get("architectures") or []) or "none given"
        raise DataError(
            f"unsupported Hugging Face model_type {model_type!r} (architectures: {architectures}); supported: {known}",
            path / "config.json",
        )
    model = load_base_model(path, SPEECH_MODELS[model_type])
    sample_rate, normalize = _preprocessing(path, config)
    return HFSpeechEncoder(model, sample_rate=sample_rate, normalize_waveform=normalize)


def _detect(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


register_importer(
    Importer(
        name="transformers",
        description="Hugging Face directory (config.json + safetensors/bin): Wav2Vec2, HuBERT, WavLM, AST",
        detect=_detect,
        load=load_transformers,
    )
)
