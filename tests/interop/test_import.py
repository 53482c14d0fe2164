"""Format detection and the errors a user sees for files audiossl cannot import."""

from __future__ import annotations

import pytest
import torch

from audiossl.errors import ConfigError, DataError
from audiossl.interop import IMPORTERS, detect_format, import_model


def test_formats_are_registered():
    assert IMPORTERS.names() == ["fairseq2", "torchaudio", "transformers"]
    assert all(IMPORTERS.get(name).description for name in IMPORTERS.names())


def test_unknown_directory_lists_its_content(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"not a checkpoint format .*found a directory holding: notes\.txt, weights\.npz"
    ):
        import_model(tmp_path)


def test_unknown_torch_file_lists_its_keys(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"encoder": {"w": torch.zeros(1)}, "step": 3}, path)
    with pytest.raises(DataError, match=r"top-level keys: encoder, step"):
        detect_format(path)


def test_file_with_code_is_refused_without_running_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pt"
    torch.save({"torchaudio_model": "wav2vec2_base", "state_dict": Payload()}, path)
    with pytest.raises(DataError, match="not a checkpoint readable as plain data") as caught:
        import_model(path, format="torchaudio")
    assert "weights_only=False" not in str(caught.value)  # never torch's advice to unpickle it anyway


def test_unknown_format_name_and_missing_path(tmp_path):
    with pytest.raises(ConfigError, match="known: fairseq2, torchaudio, transformers"):
        import_model(tmp_path, format="onnx")
    with pytest.raises(DataError, match="no such file or directory"):
        import_model(tmp_path / "absent")


def test_hugging_face_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(DataError, match="no weights in this directory"):
        import_model(tmp_path)
