"""Export to TorchScript and ONNX: the exported file, run by torch.jit.load / onnxruntime, matches the eager encoder."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
import torch

from audiossl.cli.main import main
from audiossl.embed import load
from audiossl.export import ExportError, export_model


def features(model, seconds: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([round(s * model.sample_rate) for s in seconds])
    waveforms = 0.1 * torch.randn(len(seconds), int(lengths.max()), generator=generator)
    waveforms = waveforms * (torch.arange(waveforms.shape[1]) < lengths.unsqueeze(1))
    return model.inputs(waveforms, lengths)


@pytest.mark.parametrize(
    ("fmt", "family", "kind"),
    [
        ("torchscript", "ast", "frame"),
        ("onnx", "ast", "frame"),
        ("torchscript", "ast", "patch"),
        ("onnx", "ast", "patch"),
        ("torchscript", "ast", "waveform"),
        ("onnx", "ast", "waveform"),
        ("torchscript", "conformer", "patch"),
    ],
)
def test_export_matches_eager_on_new_lengths(fmt, family, kind, checkpoints, tmp_path):
    ast_checkpoint = checkpoints[(family, kind)]
    out = tmp_path / f"encoder.{fmt}"
    assert main(["export", "--model", str(ast_checkpoint), "--format", fmt, "-o", str(out)]) == 0
    info = json.loads((tmp_path / f"encoder.{fmt}.json").read_text())
    assert info["frontend"] == ("none" if kind == "waveform" else "fbank")
    assert info["num_layers"] == 2 and info["max_abs_difference"] <= 1e-4

    model = load(ast_checkpoint, device="cpu")
    # Batch sizes and lengths unlike both the trace's example and export_model's own check.
    for seconds, seed in (([2.3], 11), ([0.6, 1.4, 0.9, 0.35], 12)):
        feats, lengths = features(model, seconds, seed)
        with torch.no_grad():
            eager = model.encoder(feats, lengths).without_prefix()
        if fmt == "torchscript":
            with torch.no_grad():
                got = [t.numpy() for t in torch.jit.load(str(out))(feats, lengths)]
        else:
            session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = session.run(None, {"features": feats.numpy(), "lengths": lengths.numpy()})
        last, layers, out_lengths = got
        np.testing.assert_array_equal(out_lengths, eager.lengths.numpy())
        assert last.shape == tuple(eager.last.shape) and layers.shape == (2, *eager.last.shape)
        valid = (np.arange(last.shape[1]) < out_lengths[:, None])[..., None]  # padding carries no meaning
        assert np.abs((last - eager.last.numpy()) * valid).max() <= 1e-4
        assert np.abs((layers - torch.stack(eager.layers).numpy()) * valid).max() <= 1e-4

    assert main(["export", "--model", str(ast_checkpoint), "--format", fmt, "-o", str(out)]) == 2  # exists


def test_untraceable_encoders_are_refused_not_written(checkpoints, tmp_path):
    out = tmp_path / "mamba.pt"
    with pytest.raises(ExportError, match="shape|export"):
        export_model(checkpoints[("mamba", "frame")], out, "torchscript")
    assert not out.exists() and not list(tmp_path.iterdir())  # no file, no temporary left behind
