"""``audiossl.load(path)``: a ready :class:`~audiossl.models.SpeechEncoder` (eval mode) from any checkpoint we read.

audiossl checkpoints (``ckpt-*.pt``, ``best.pt``) and run dirs are rebuilt by
:mod:`audiossl.models`: the file is read once, memory-mapped, and only the entries a model needs
(config, encoder, model weights, input statistics) are taken, never the optimizer state. Anything
else is handed to :func:`audiossl.interop.import_model` (torchaudio, Hugging Face and fairseq2
checkpoints) when that module is installed. Nothing is unpickled: audiossl checkpoints are read
with ``torch.load(weights_only=True)``, and the importers read safetensors or ``weights_only`` files.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

from audiossl.encoders import ENCODERS
from audiossl.errors import ConfigError, DataError
from audiossl.models import SpeechEncoder, latest_checkpoint, read_checkpoint
from audiossl.models.pretrained import MODEL_ENTRIES, pretrained_from_state

#: Top-level entries :func:`~audiossl.models.load_pretrained` needs in a checkpoint.
REQUIRED_ENTRIES = MODEL_ENTRIES


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and the CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but CUDA is not available")
    return device


def _read_audiossl(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """(checkpoint file, its model entries) when ``path`` is an audiossl checkpoint or run dir, else None.

    The one read of the file: memory-mapped, model entries only (see :func:`audiossl.models.read_checkpoint`).
    """
    if path.is_dir():
        source = latest_checkpoint(path)
        if source is None:
            return None
        return source, read_checkpoint(source, keys=REQUIRED_ENTRIES)
    if path.is_file() and path.suffix == ".pt":
        try:
            return path, read_checkpoint(path, keys=REQUIRED_ENTRIES)
        except DataError:
            return None
    return None


def _check_state(state: dict[str, Any], path: Path) -> None:
    """Name what is missing or unknown in an audiossl checkpoint before building anything from it."""
    missing = [key for key in REQUIRED_ENTRIES if key not in state]
    if missing:
        raise DataError(f"audiossl checkpoint lacks the entries {missing} (has {sorted(state)})", path)
    family = state["encoder"].get("family") if isinstance(state["encoder"], dict) else None
    if family not in ENCODERS:
        raise DataError(
            f"unknown encoder architecture {family!r}; known: {', '.join(ENCODERS.names())} "
            "(a plugin that registers it must be installed)",
            path,
        )


def _load_audiossl(path: Path, state: dict[str, Any]) -> SpeechEncoder:
    _check_state(state, path)
    try:
        return pretrained_from_state(state)
    except RuntimeError as error:  # load_state_dict: torch lists the missing and unexpected keys
        text = str(error)
        if "state_dict" not in text:
            raise
        raise DataError(f"the checkpoint's weights do not fit its encoder: {text}", path) from None


def _interop_available() -> bool:
    try:
        return importlib.util.find_spec("audiossl.interop") is not None
    except ModuleNotFoundError:
        return False


def load(path: str | Path, device: str | torch.device | None = None) -> SpeechEncoder:
    """A pretrained model ``(waveforms (B, T), lengths (B,)) -> EncoderOutput`` in eval mode on ``device``.

    ``path``: an audiossl checkpoint or run dir, or (with :mod:`audiossl.interop`) a torchaudio,
    Hugging Face or fairseq2 checkpoint. The model is a :class:`~audiossl.models.SpeechEncoder`
    (``sample_rate``, ``dim``, ``num_layers``, ``frame_rate``).
    ``device`` None: CUDA when available, else the CPU.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("model checkpoint not found", path)
    found = _read_audiossl(path)
    if found is not None:
        model = _load_audiossl(*found)
    elif _interop_available():
        interop = importlib.import_module("audiossl.interop")
        model = interop.import_model(path)
    else:
        raise DataError(
            "not an audiossl checkpoint: expected a run dir holding ckpt-*.pt or a checkpoint file written by "
            "`audiossl pretrain` (importing other checkpoints needs audiossl.interop, which is not installed)",
            path,
        )
    return model.to(resolve_device(device)).eval()
