"""Export a pretrained encoder to TorchScript or ONNX for inference, checked against the eager model.

What is exported is the encoder on features: ``(features (B, F, C) float32, lengths (B,) int64)
-> (last (B, S, D), layers (L, B, S, D), lengths (B,))`` with prefix (cls) tokens removed. The
front-end (Kaldi fbank, log-mel, ...) and its normalisation are not part of the graph: they
compute frame counts and buffers with Python integers and in-place writes that a trace would
freeze to the example's length. A JSON file beside the export (``OUT.json``) records the
front-end, its settings and the normalisation, so the features can be computed elsewhere; in
Python, ``audiossl.load(ckpt).inputs(waveforms, lengths)`` gives them.

Both formats come from tracing (``torch.jit.trace``; ONNX through the TorchScript-based
exporter, opset 17, with dynamic batch and time axes). A trace records one path through the
code, so every export is run again on a batch of another size and other lengths than the
example and compared with the eager model; a difference above ``tolerance`` is an
:class:`ExportError` and no file is left behind. Today that check passes for AST on every input
kind (both formats) and Conformer (TorchScript); BiMamba's chunked scan does not trace and is
refused (see docs/embedding.md). Features must be trimmed to the longest item, as the input
pipeline returns them: under a trace, token counts come from the input's shape.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiossl.embed.loading import load
from audiossl.errors import ConfigError, UserError
from audiossl.fileio import atomic_path, atomic_write
from audiossl.models import PretrainedEncoder

EXPORT_FORMATS = ("torchscript", "onnx")
INPUT_NAMES = ["features", "lengths"]
OUTPUT_NAMES = ["last", "layers", "lengths_out"]


class ExportError(UserError):
    """The exported graph does not reproduce the eager model (or cannot be built)."""


class EncoderExport(nn.Module):
    """The traced interface: ``(features, lengths) -> (last, stacked layers, lengths)`` without prefix tokens."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        output = self.encoder(features, lengths).without_prefix()
        return output.last, torch.stack(output.layers), output.lengths  # (B, S, D), (L, B, S, D), (B,)


def _features(model: PretrainedEncoder, seconds: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder inputs (B, F, C) + lengths for random audio of ``seconds`` (the pipeline of ``model``)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([round(s * model.sample_rate) for s in seconds])  # (B,)
    waveforms = 0.1 * torch.randn(len(seconds), int(lengths.max()), generator=generator)  # (B, T)
    waveforms = waveforms * (torch.arange(waveforms.shape[1]) < lengths.unsqueeze(1))
    return model.inputs(waveforms, lengths)


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _max_difference(got: list[np.ndarray], want: tuple[torch.Tensor, ...]) -> float:
    worst = 0.0
    for name, a, b in zip(OUTPUT_NAMES, got, want, strict=True):
        b = b.detach().numpy()
        if a.shape != b.shape:
            raise ExportError(f"the exported graph gives {name} of shape {a.shape}, the eager model {b.shape}")
        worst = max(worst, float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0)
    return worst


def _run_export(export: bytes | Path, format: str, features: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """Run what :func:`export_model` has just produced on ``features`` + ``lengths``, on the CPU.

    A TorchScript archive is a program: ``torch.jit.load`` runs the code inside it. So it is
    loaded only from ``bytes`` this process has just serialised (never from a file, which another
    process could swap between the write and the read), and no audiossl command or function
    loads a TorchScript file a user names. An ONNX file is a graph of standard operators that
    onnxruntime interprets (no custom-operator libraries are registered): it is read from ``export``.
    """
    if format == "torchscript":
        if not isinstance(export, bytes):
            raise TypeError("TorchScript is loaded only from the bytes this process has just exported")
        module = torch.jit.load(io.BytesIO(export), map_location="cpu")
        with torch.no_grad():
            return [t.numpy() for t in module(features, lengths)]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(export), providers=["CPUExecutionProvider"])
    return session.run(None, {"features": features.numpy(), "lengths": lengths.numpy()})


def export_model(
    model: PretrainedEncoder | str | Path,
    out: str | Path,
    format: str = "torchscript",
    *,
    tolerance: float = 1e-4,
    overwrite: bool = False,
) -> Path:
    """Export the encoder of ``model`` (a loaded model or a checkpoint path) to ``out``; see the module doc.

    Returns ``out``. Writes ``out`` and ``out.json`` (inputs, outputs, front-end settings, the
    measured difference to the eager model), each atomically, only when the check passes.
    """
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {format!r}; known: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    sidecar = out.with_name(out.name + ".json")
    if (out.exists() or sidecar.exists()) and not overwrite:
        raise ExportError("output path exists (use --overwrite to replace it)", out)
    if isinstance(model, (str, Path)):
        model = load(model, device="cpu")
    model = model.to("cpu").eval()
    if not isinstance(model, PretrainedEncoder):  # imported models have no separable front-end to export around
        raise ExportError(
            f"export needs an audiossl model (PretrainedEncoder, with .inputs and .encoder), got {type(model).__name__}"
        )
    wrapper = EncoderExport(model.encoder).eval()
    example = _features(model, [1.0, 0.7], seed=0)  # unequal lengths: the padding path is traced
    check = _features(model, [1.9, 1.3, 0.45], seed=1)  # another batch size and other lengths
    with torch.no_grad():
        want = wrapper(*check)
    with atomic_path(out) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings are about exactly what the check below catches
        program: bytes | None = None
        try:
            if format == "torchscript":
                traced = torch.jit.trace(wrapper, example, check_trace=False)
                buffer = io.BytesIO()
                torch.jit.save(traced, buffer)
                program = buffer.getvalue()
                tmp.write_bytes(program)
            else:
                torch.onnx.export(
                    wrapper,
                    example,
                    str(tmp),
                    input_names=INPUT_NAMES,
                    output_names=OUTPUT_NAMES,
                    dynamic_axes={
                        "features": {0: "batch", 1: "frames"},
                        "lengths": {0: "batch"},
                        "last": {0: "batch", 1: "tokens"},
                        "layers": {1: "batch", 2: "tokens"},
                        "lengths_out": {0: "batch"},
                    },
                    opset_version=17,
                    dynamo=False,
                )
        except Exception as error:  # the tracer and exporter raise many types
            raise ExportError(f"{format} export of this encoder failed: {_first_line(error)}") from None
        try:
            got = _run_export(program if program is not None else tmp, format, *check)
        except ExportError:
            raise
        except Exception as error:
            raise ExportError(
                f"the {format} export does not run on another input length: {_first_line(error)}"
            ) from None
        difference = _max_difference(got, want)
        if not difference <= tolerance:
            raise ExportError(
                f"the {format} export differs from the eager model by {difference:.3g} (> {tolerance:g}) on another "
                "input length: this encoder's code is not traceable; use the Python model"
            )
    data = model.config.data
    info = {
        "format": format,
        "inputs": {"features": "(batch, frames, channels) float32", "lengths": "(batch,) int64 valid frames"},
        "outputs": {
            "last": "(batch, tokens, dim) final hidden states",
            "layers": "(num_layers, batch, tokens, dim) every block's output",
            "lengths_out": "(batch,) valid tokens",
        },
        "dim": model.dim,
        "num_layers": model.num_layers,
        "sample_rate": int(data.sample_rate),
        "frontend": data.frontend,
        "frontend_config": dict(data.frontend_config),
        "normalize": data.normalize,
        "max_abs_difference": difference,
    }
    if data.normalize == "global":  # the statistics live in the checkpoint; the features need them
        info["global_mean"] = model.inputs.mean.tolist()
        info["global_std"] = model.inputs.std.tolist()
    with atomic_write(sidecar) as handle:
        json.dump(info, handle, indent=1)
    return out
