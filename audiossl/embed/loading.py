"""``audiossl.load(path)``: a ready model (input pipeline + encoder, eval mode) from any checkpoint we read.

audiossl checkpoints (``ckpt-*.pt``, ``best.pt``) and run dirs go through
:func:`audiossl.train.pretrained.load_pretrained`. Anything else is handed to
:func:`audiossl.interop.import_model` (torchaudio, Hugging Face and fairseq2 checkpoints) when
that module is installed. Nothing is unpickled: audiossl checkpoints are read with
``torch.load(weights_only=True)``, and the importers read safetensors or ``weights_only`` files.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from audiossl.errors import ConfigError, DataError
from audiossl.train.checkpoint import latest_checkpoint, load_checkpoint

#: Top-level entries :func:`~audiossl.train.pretrained.load_pretrained` needs in a checkpoint.
REQUIRED_ENTRIES = ("config", "encoder", "model", "inputs")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device``, or CUDA when available and the CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but CUDA is not available")
    return device


def _audiossl_checkpoint(path: Path) -> Path | None:
    """The audiossl checkpoint file ``path`` names (a run dir's newest), or None when it is not one."""
    if path.is_dir():
        return latest_checkpoint(path)
    if path.is_file() and path.suffix == ".pt":
        try:
            load_checkpoint(path)
        except DataError:
            return None
        return path
    return None


def _check_state(path: Path) -> None:
    """Name what is missing or unknown in an audiossl checkpoint before building anything from it."""
    from audiossl.encoders import ENCODERS

    state = load_checkpoint(path)
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


def _load_audiossl(path: Path) -> nn.Module:
    from audiossl.train.pretrained import load_pretrained

    _check_state(path)
    try:
        return load_pretrained(path)
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


def load(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """A pretrained model ``(waveforms (B, T), lengths (B,)) -> EncoderOutput`` in eval mode on ``device``.

    ``path``: an audiossl checkpoint or run dir, or (with :mod:`audiossl.interop`) a torchaudio,
    Hugging Face or fairseq2 checkpoint. The model has ``sample_rate``, ``dim`` and ``num_layers``.
    ``device`` None: CUDA when available, else the CPU.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("model checkpoint not found", path)
    checkpoint = _audiossl_checkpoint(path)
    if checkpoint is not None:
        model = _load_audiossl(checkpoint)
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
