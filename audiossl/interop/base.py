"""What every imported model shares: the module contract, safe file reading and key checks.

An imported model is a :class:`~audiossl.models.SpeechEncoder`
``(waveforms (B, T), lengths (B,)) -> EncoderOutput`` with ``sample_rate``, ``dim``,
``num_layers`` and ``frame_rate``, like an audiossl pretrained encoder, so the embedding API
and every plugin can use published checkpoints unchanged.
Nothing here executes code from a checkpoint: pickles are read with ``weights_only=True``.
"""

from __future__ import annotations

import abc
import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from audiossl.encoders import EncoderOutput
from audiossl.errors import DataError
from audiossl.fileio import read_weights_only
from audiossl.models.inputs import normalize_waveforms
from audiossl.models.protocol import SpeechEncoder
from audiossl.nn.masking import lengths_to_padding_mask
from audiossl.registry import Registry


class ImportedEncoder(SpeechEncoder):
    """Base of imported models: ``forward(waveforms (B, T), lengths (B,)) -> EncoderOutput``.

    ``layers`` are the hidden states after every transformer block (before any final norm);
    ``last`` is the model's final output (after its final norm, when it has one).

    The forward pass is written once, here: normalise the waveforms when the peer was trained
    on normalised audio, run the peer (:meth:`run`) batched, or item by item when padding
    would reach valid frames (:meth:`runs_items_alone`), then zero the padded positions.
    Each format implements only :meth:`run`.
    """

    #: Leading non-audio positions in the output (AST's cls and distillation tokens).
    num_prefix_tokens: int = 0
    #: Which importer built this model (a name of :data:`IMPORTERS`).
    source: str = ""
    #: Whether the waveforms get zero mean and unit variance per utterance first (the peer's input normalisation).
    normalize_waveform: bool = False
    #: Whether, run batched, padding would reach valid frames (group norm over time, convolutions
    #: over padded frames); such models run a batch of unequal lengths item by item.
    padding_leaks: bool = False
    #: Set to False to run leaky models batched anyway, as the peer does (faster, not exact).
    exact_padding: bool = True

    @abc.abstractmethod
    def run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        """The peer on a padded batch: ``(last (B, S, D), layers L x (B, S, D), frame lengths (B,))``."""

    def runs_items_alone(self) -> bool:
        """Whether a batch of unequal lengths is run item by item (see :attr:`padding_leaks`)."""
        return self.padding_leaks and self.exact_padding

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        lengths = lengths.to(waveforms.device)
        if self.normalize_waveform:
            waveforms = normalize_waveforms(waveforms, lengths)
        if self.runs_items_alone():
            last, layers, frame_lengths = run_items_alone(self.run, waveforms, lengths)
        else:
            last, layers, frame_lengths = self.run(waveforms, lengths)
        return make_output(last, layers, frame_lengths, self.num_prefix_tokens)


@dataclass(frozen=True)
class Importer:
    """One checkpoint format: how to recognise it and how to load it."""

    name: str
    #: One line for ``audiossl interop list`` and the docs.
    description: str
    #: True when ``path`` looks like this format (cheap: reads configs, never whole weights).
    detect: Callable[[Path], bool]
    #: Build the model in eval mode from ``path``.
    load: Callable[[Path], ImportedEncoder]


#: The checkpoint formats :func:`audiossl.interop.import_model` understands, by name.
IMPORTERS: Registry[Importer] = Registry("checkpoint format")


def register_importer(importer: Importer) -> Importer:
    """Add a format to :data:`IMPORTERS` (plugins may add their own)."""
    return IMPORTERS.register(importer.name)(importer)


def _data_only_globals() -> list:
    """Classes that rebuild plain data, found in fairseq1 files: its args and numpy scalars/arrays.

    (numpy arrays of Python objects still need their objects' classes, which stay refused.)
    """
    import numpy

    core = getattr(numpy, "_core", None) or numpy.core  # numpy 2 / numpy 1
    scalar, reconstruct = core.multiarray.scalar, core.multiarray._reconstruct
    dtypes = [getattr(numpy.dtypes, name) for name in numpy.dtypes.__all__]
    return [
        argparse.Namespace,
        numpy.ndarray,
        numpy.dtype,
        *dtypes,
        scalar,
        reconstruct,
        (scalar, "numpy.core.multiarray.scalar"),  # names in files pickled under numpy 1.x
        (reconstruct, "numpy.core.multiarray._reconstruct"),
    ]


def read_torch_file(path: Path, *, mmap: bool = False) -> object:
    """``torch.load`` with ``weights_only=True``, allowing only :func:`_data_only_globals` beyond tensors.

    A file torch refuses (foreign classes, truncation) is a :class:`DataError` naming the file, in
    audiossl's words (:func:`audiossl.fileio.read_weights_only`), never torch's.
    """
    return read_weights_only(path, what="a checkpoint", mmap=mmap, safe_globals=_data_only_globals())


def peek_torch_file(path: Path) -> object | None:
    """What a weights-only torch file holds (memory-mapped), or None when ``path`` is not one: for ``detect``."""
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    try:
        return read_torch_file(path, mmap=True)
    except DataError:
        return None


def read_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a weights-only torch file."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:
            raise DataError(f"cannot read the safetensors file: {error}", path) from None
    state = read_torch_file(path)
    if not isinstance(state, dict):
        raise DataError(f"expected a state dict (name -> tensor), found {type(state).__name__}", path)
    return state


def _sample(keys: Iterable[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    """``module.load_state_dict(strict=True)``, with a :class:`DataError` that names the keys.

    Missing and unexpected keys are listed (the first dozen of each), and shape mismatches
    name the key and both shapes, so a user sees at once whether the file holds another
    architecture or another size of the same one.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_sample(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_sample(unexpected)}")
        raise DataError(f"the weights do not fit a {what}: " + "; ".join(parts), path)
    for key, tensor in expected.items():
        found = state_dict[key]
        if not isinstance(found, torch.Tensor) or tuple(found.shape) != tuple(tensor.shape):
            shape = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
            raise DataError(f"{key}: the {what} expects shape {tuple(tensor.shape)}, the file has {shape}", path)
    module.load_state_dict(state_dict, strict=True)


def conv_frame_lengths(lengths: torch.Tensor, kernels_strides: Iterable[tuple[int, int]]) -> torch.Tensor:
    """Frames after a stack of unpadded 1-d convolutions (wav2vec2's waveform CNN), per item (B,)."""
    for kernel, stride in kernels_strides:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        lengths = lengths.clamp(min=0)
    return lengths


def make_output(
    last: torch.Tensor, layers: list[torch.Tensor], lengths: torch.Tensor, num_prefix_tokens: int = 0
) -> EncoderOutput:
    """An :class:`EncoderOutput` with padded positions zeroed (they carry no meaning in any peer)."""
    padding_mask = lengths_to_padding_mask(lengths, last.shape[1])  # (B, S) True at padding
    keep = (~padding_mask).unsqueeze(-1).to(last.dtype)  # (B, S, 1)
    return EncoderOutput(
        last=last * keep,
        layers=[layer * keep for layer in layers],
        lengths=lengths,
        padding_mask=padding_mask,
        num_prefix_tokens=num_prefix_tokens,
    )


def run_items_alone(
    run: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]],
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Run ``run(waveforms, lengths) -> (last, layers, lengths)`` on every item cut to its length, then pad.

    For models whose statistics span the whole input (wav2vec2-base's group norm over time in
    its first convolution), this is the only way a padded batch gives what each item gives
    alone; a batch of equal lengths is run as one batch.
    """
    if bool((lengths == waveforms.shape[1]).all()):
        return run(waveforms, lengths)
    results = [run(waveforms[b : b + 1, : int(lengths[b])], lengths[b : b + 1]) for b in range(waveforms.shape[0])]
    frames = max(last.shape[1] for last, _, _ in results)

    def pad(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([nn.functional.pad(t, (0, 0, 0, frames - t.shape[1])) for t in tensors])  # (B, S, D)

    last = pad([r[0] for r in results])
    layers = [pad([r[1][i] for r in results]) for i in range(len(results[0][1]))]
    return last, layers, torch.cat([r[2] for r in results])
