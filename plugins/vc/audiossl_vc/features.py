"""Frame features for voice conversion: one vector per time step of a pretrained encoder.

Matching (:mod:`audiossl_vc.matching`) and the vocoders need features on a regular time grid
with a known hop in samples. Encoders give tokens: for frame and waveform inputs one token per
time step; for spectrogram patches ``freq_patches`` tokens per time step (time-major). Here the
patches of one time step are concatenated, so every encoder yields ``(frames, dim x freq_patches)``
features and the hop is the front-end's frame shift times the tokens' time stride.

Which hidden states to use is a :class:`LayerSpec`: one layer (kNN-VC uses a single middle layer
of WavLM, Baas et al. 2023), the plain mean of several layers (a fixed mix), or ``mix``: a
softmax-weighted sum of all layers whose weights are learned with the vocoder
(:class:`~audiossl.downstream.featurizer.WeightedLayerSum`, the SUPERB featurizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from audiossl.downstream.featurizer import WeightedLayerSum
from audiossl.encoders import EncoderOutput
from audiossl.errors import ConfigError
from audiossl.models import PretrainedEncoder


@dataclass(frozen=True)
class LayerSpec:
    """Which encoder layers make the features: ``layers`` (indices into ``EncoderOutput.layers``, negative
    counts from the end) and ``mode``: ``single`` (one layer), ``mean`` (fixed equal mix), ``mix`` (learned)."""

    layers: tuple[int, ...]
    mode: str

    @staticmethod
    def parse(text: str | int, num_layers: int) -> LayerSpec:
        """``"3"`` (layer 3), ``"-1"`` (last block), ``"2,3"`` (mean of 2 and 3), ``"mix"`` (learned, all layers)."""
        text = str(text).strip()
        if text == "mix":
            return LayerSpec(tuple(range(num_layers)), "mix")
        try:
            indices = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(
                f"layer must be an index, a comma-separated list of indices or 'mix', got {text!r}"
            ) from None
        if not indices:
            raise ConfigError("layer: give at least one index")
        resolved = []
        for index in indices:
            if not -num_layers <= index < num_layers:
                raise ConfigError(f"layer {index} is out of range for an encoder of {num_layers} layers")
            resolved.append(index % num_layers)
        return LayerSpec(tuple(resolved), "single" if len(resolved) == 1 else "mean")

    def __str__(self) -> str:
        return "mix" if self.mode == "mix" else ",".join(str(i) for i in self.layers)


class LayerSelector(nn.Module):
    """Stacked selected layers (K, B, N, D) -> features (B, N, D) following a :class:`LayerSpec`.

    Only ``mix`` has parameters (the layer weights); they live in the vocoder run that learned them.
    """

    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.spec = spec
        self.mixer = WeightedLayerSum(len(spec.layers)) if spec.mode == "mix" else None

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        if stacked.shape[0] != len(self.spec.layers):
            raise ValueError(f"expected {len(self.spec.layers)} stacked layers, got {stacked.shape[0]}")
        if self.mixer is not None:
            return self.mixer(stacked)
        return stacked.mean(dim=0)


def frame_hop(model: PretrainedEncoder) -> int:
    """Samples between consecutive feature frames of ``model`` (front-end hop x token time stride)."""
    embedding = model.encoder.embedding
    config = embedding.config
    if config.kind == "waveform":
        return int(embedding.frontend.frame_shift)
    shift = int(model.inputs.frontend.frame_shift)
    if config.kind == "frame":
        return shift * config.frame_stack
    return shift * config.patch.time_stride


def feature_dim(model: PretrainedEncoder) -> int:
    """Width of the frame features: encoder dim x tokens per time step."""
    return int(model.encoder.dim) * int(model.encoder.embedding.freq_patches)


def time_major_layers(output: EncoderOutput, freq_patches: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Layers of ``output`` as time steps: each (B, S, D) -> (B, S / Fp, Fp * D), and frame lengths (B,)."""
    output = output.without_prefix()
    if freq_patches == 1:
        return list(output.layers), output.lengths
    layers = []
    for layer in output.layers:
        batch, tokens, dim = layer.shape
        layers.append(layer.reshape(batch, tokens // freq_patches, freq_patches * dim))  # (B, N, Fp * D)
    return layers, torch.div(output.lengths, freq_patches, rounding_mode="floor")


@torch.no_grad()
def encode_layers(
    model: PretrainedEncoder, waveforms: torch.Tensor, lengths: torch.Tensor, layers: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selected layers of a padded batch as time steps: (K, B, N, D), frame lengths (B,).

    Padding frames are zero; valid frames do not depend on the padding (the encoders' invariant).
    """
    output = model(waveforms.float(), lengths)
    frames, frame_lengths = time_major_layers(output, int(model.encoder.embedding.freq_patches))
    stacked = torch.stack([frames[i] for i in layers])  # (K, B, N, D)
    valid = torch.arange(stacked.shape[2], device=stacked.device) < frame_lengths.unsqueeze(1)  # (B, N)
    return stacked * valid.unsqueeze(-1).to(stacked.dtype), frame_lengths


def encode_utterance(
    model: PretrainedEncoder, waveform: torch.Tensor, spec: LayerSpec, selector: LayerSelector | None = None
) -> torch.Tensor:
    """Features (N, D) of one waveform (T,) for ``spec`` (``selector`` supplies learned mix weights)."""
    stacked, lengths = encode_layers(model, waveform.unsqueeze(0), torch.tensor([waveform.shape[-1]]), spec.layers)
    selector = selector if selector is not None else LayerSelector(spec)
    with torch.no_grad():
        return selector(stacked)[0, : int(lengths[0])]  # (N, D)
