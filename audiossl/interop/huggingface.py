"""Hugging Face directories read offline: config.json, base models with checked weights, block outputs.

Shared by the speech importer (:mod:`audiossl.interop.transformers`) and the AST wrapper
(:mod:`audiossl.interop.ast`); imports no other interop module. ``transformers`` itself is
imported inside :func:`load_base_model` only: it takes seconds to import, and most users
never load a Hugging Face model.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from audiossl.errors import DataError
from audiossl.fileio import read_weights_only

AST_MODEL_TYPE = "audio-spectrogram-transformer"
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
#: Parameters a base model may lack without harm at inference (the training-time mask embedding).
OPTIONAL_KEYS = ("masked_spec_embed",)


def read_config(path: Path) -> dict:
    """The directory's config.json as a dict (a :class:`DataError` when absent or not JSON)."""
    file = path / "config.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the Hugging Face config: {error}", file) from None


def load_base_model(path: Path, class_name: str) -> nn.Module:
    """``<class_name>.from_pretrained(path)`` offline, refusing missing or mis-shaped weights.

    transformers fills missing weights with random values and only logs it; an import must
    not do that silently, so the loading report is checked and the keys are named.
    """
    import transformers

    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise DataError(f"no weights in this directory (looked for {', '.join(WEIGHT_FILES)})", path)
    safetensors = _has_safetensors(path)
    if not safetensors:
        _check_torch_weights(path)
    model_class = getattr(transformers, class_name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # we report the loading problems ourselves
    try:
        # safetensors when the directory has them (never falling back to a pickle); otherwise the
        # .bin files, read by transformers with torch.load(weights_only=True) after our own check
        model, info = model_class.from_pretrained(
            path,
            local_files_only=True,
            trust_remote_code=False,
            output_loading_info=True,
            use_safetensors=safetensors,
            weights_only=True,
        )
    except OSError as error:
        raise DataError(f"cannot load the {class_name} weights: {error}", path) from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing = [k for k in info["missing_keys"] if not k.endswith(OPTIONAL_KEYS)]
    if missing or info["mismatched_keys"]:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(sorted(missing)[:12])}")
        if info["mismatched_keys"]:
            shown = [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in info["mismatched_keys"][:12]]
            parts.append(f"mismatched shapes: {', '.join(shown)}")
        raise DataError(f"the weights do not fit a {class_name}: " + "; ".join(parts), path)
    if info["unexpected_keys"]:
        logging.getLogger(__name__).debug("%s: ignoring %d head keys", path, len(info["unexpected_keys"]))
    return model.eval()


def _has_safetensors(path: Path) -> bool:
    return (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()


def _check_torch_weights(path: Path) -> None:
    """Read every ``pytorch_model*.bin`` of the directory as weights only first, so a refusal is ours.

    transformers reads them with ``weights_only=True`` too, but its error for a file with pickled
    code blames the format ("set from_tf=True"); :func:`read_weights_only` names the file and says
    what it is not. The read is memory-mapped: tensors are not loaded twice.
    """
    files = [path / "pytorch_model.bin"]
    index = path / "pytorch_model.bin.index.json"
    if index.is_file():
        try:
            files = [path / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise DataError(f"cannot read the shard index: {error}", index) from None
    for file in files:
        if file.is_file():
            read_weights_only(file, what="a Hugging Face weights file", mmap=True)


class LayerRecorder:
    """Forward hooks keeping the output of every transformer block, in order, while :meth:`record` is on.

    Outside :meth:`record` the hooks keep nothing, so running the peer module directly does
    not accumulate tensors.
    """

    def __init__(self, blocks: nn.ModuleList):
        self.outputs: list[torch.Tensor] | None = None
        for block in blocks:
            block.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: object, output: object) -> None:
        if self.outputs is not None:
            self.outputs.append(output[0] if isinstance(output, tuple) else output)

    @contextlib.contextmanager
    def record(self) -> Iterator[list[torch.Tensor]]:
        """Collect block outputs into the yielded list for the duration of the block."""
        self.outputs = outputs = []
        try:
            yield outputs
        finally:
            self.outputs = None
