"""torchaudio's wav2vec2 / HuBERT / WavLM models (``torchaudio.models``), wrapped.

torchaudio state dicts do not say which architecture they belong to, so the file we accept
pairs them with the name of the torchaudio builder and its arguments::

    {"torchaudio_model": {"builder": "wavlm_base", "kwargs": {}},   # or just "wavlm_base"
     "state_dict": model.state_dict(),
     "sample_rate": 16000,            # optional, 16000 by default
     "normalize_waveform": False}     # optional: per-utterance zero mean / unit variance

:func:`save_torchaudio_checkpoint` writes it. The module is torchaudio's own model, run
through ``extract_features`` (every transformer layer) with the lengths (WavLM: without, item
by item, as torchaudio's WavLM attention takes no padding mask).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from audiossl.errors import DataError
from audiossl.fileio import atomic_write
from audiossl.interop.base import (
    ImportedEncoder,
    Importer,
    conv_frame_lengths,
    load_weights,
    peek_torch_file,
    read_torch_file,
    register_importer,
)

#: torchaudio builders that return a ``torchaudio.models.Wav2Vec2Model`` encoder.
BUILDERS = (
    "wav2vec2_model",
    "wav2vec2_base",
    "wav2vec2_large",
    "wav2vec2_large_lv60k",
    "wav2vec2_xlsr_300m",
    "wav2vec2_xlsr_1b",
    "wav2vec2_xlsr_2b",
    "hubert_base",
    "hubert_large",
    "hubert_xlarge",
    "wavlm_model",
    "wavlm_base",
    "wavlm_large",
)
FORMAT_KEY = "torchaudio_model"


class TorchaudioEncoder(ImportedEncoder):
    """A torchaudio ``Wav2Vec2Model`` as an audiossl encoder (wrapped, not converted).

    ``exact_padding``: models whose first convolution has a group norm over time
    (wav2vec2/HuBERT/WavLM base) normalise over the padded tail too; with this on (default),
    a batch of unequal lengths is run item by item so each item gets what it gets alone.
    """

    source = "torchaudio"

    def __init__(self, model: nn.Module, *, sample_rate: int = 16000, normalize_waveform: bool = False):
        super().__init__()
        self.model = model.eval()
        self.sample_rate = sample_rate
        self.normalize_waveform = normalize_waveform
        convs = [block.conv for block in model.feature_extractor.conv_layers]
        self.dim = model.encoder.feature_projection.projection.out_features
        self.num_layers = len(model.encoder.transformer.layers)
        self.frame_rate = sample_rate / float(torch.tensor([c.stride[0] for c in convs]).prod())
        self.kernels_strides = [(c.kernel_size[0], c.stride[0]) for c in convs]
        #: Whether padding reaches valid frames batched (a group norm over time in the first convolution).
        self.padding_leaks = isinstance(model.feature_extractor.conv_layers[0].layer_norm, nn.GroupNorm)
        self.exact_padding = True
        # torchaudio's WavLM attention takes no attention mask (its Transformer passes no key padding
        # mask either), so WavLM always runs unequal lengths item by item, without lengths.
        self.takes_lengths = type(model.encoder.transformer.layers[0].attention).__name__ != "WavLMSelfAttention"

    def run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        if self.takes_lengths:
            layers, frame_lengths = self.model.extract_features(waveforms, lengths)  # L x (B, S, D)
        else:
            layers, _ = self.model.extract_features(waveforms)  # run_items_alone gave full-length items
            frame_lengths = conv_frame_lengths(lengths, self.kernels_strides)
        transformer = self.model.encoder.transformer
        # torchaudio's Transformer.layer_norm_first is True for post-norm models (norm before the blocks).
        last = layers[-1] if transformer.layer_norm_first else transformer.layer_norm(layers[-1])
        return last, list(layers), frame_lengths

    def runs_items_alone(self) -> bool:
        return super().runs_items_alone() or not self.takes_lengths


def _builder(spec: object, path: Path) -> tuple[str, dict]:
    if isinstance(spec, str):
        spec = {"builder": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("builder"), str):
        raise DataError(f"{FORMAT_KEY!r} must be a builder name or {{'builder': name, 'kwargs': {{...}}}}", path)
    name, kwargs = spec["builder"], dict(spec.get("kwargs") or {})
    if name not in BUILDERS:
        raise DataError(f"unknown torchaudio builder {name!r}; known: {', '.join(BUILDERS)}", path)
    import torchaudio.models

    accepted = inspect.signature(getattr(torchaudio.models, name)).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise DataError(f"torchaudio.models.{name} takes no argument(s) {', '.join(unknown)}", path)
    return name, kwargs


def load_torchaudio(path: Path) -> TorchaudioEncoder:
    """Build the torchaudio model a :data:`FORMAT_KEY` file names and load its weights."""
    state = read_torch_file(path)
    if not isinstance(state, Mapping) or FORMAT_KEY not in state or "state_dict" not in state:
        found = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise DataError(f"a torchaudio checkpoint needs keys {FORMAT_KEY!r} and 'state_dict'; found {found}", path)
    name, kwargs = _builder(state[FORMAT_KEY], path)
    import torchaudio.models

    if "extractor_conv_layer_config" in kwargs and kwargs["extractor_conv_layer_config"] is not None:
        kwargs["extractor_conv_layer_config"] = [tuple(layer) for layer in kwargs["extractor_conv_layer_config"]]
    model = getattr(torchaudio.models, name)(**kwargs)
    load_weights(model, state["state_dict"], path, f"torchaudio {name} model")
    return TorchaudioEncoder(
        model,
        sample_rate=int(state.get("sample_rate", 16000)),
        normalize_waveform=bool(state.get("normalize_waveform", False)),
    )


def save_torchaudio_checkpoint(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    builder: str,
    kwargs: Mapping[str, object] | None = None,
    *,
    sample_rate: int = 16000,
    normalize_waveform: bool = False,
) -> Path:
    """Write a torchaudio model's weights with the builder that makes it, for :func:`import_model`.

    E.g. ``save_torchaudio_checkpoint("wavlm.pt", bundle.get_model().state_dict(), "wavlm_base")``;
    ``normalize_waveform`` should be the bundle's ``_normalize_waveform``.
    """
    path = Path(path)
    if builder not in BUILDERS:
        raise DataError(f"unknown torchaudio builder {builder!r}; known: {', '.join(BUILDERS)}")
    content = {
        FORMAT_KEY: {"builder": builder, "kwargs": dict(kwargs or {})},
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "sample_rate": sample_rate,
        "normalize_waveform": normalize_waveform,
    }
    with atomic_write(path, "wb", encoding=None) as handle:
        torch.save(content, handle)
    return path


def _detect(path: Path) -> bool:
    state = peek_torch_file(path)
    return isinstance(state, Mapping) and FORMAT_KEY in state


register_importer(
    Importer(
        name="torchaudio",
        description="torchaudio wav2vec2/HuBERT/WavLM: a .pt with {'torchaudio_model': builder, 'state_dict': ...}",
        detect=_detect,
        load=load_torchaudio,
    )
)
