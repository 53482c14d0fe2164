"""Import published wav2vec2 / HuBERT / WavLM / AST checkpoints as audiossl encoders.

:func:`import_model` recognises the format of a path (or takes ``format=``) and returns a
module ``(waveforms (B, T), lengths (B,)) -> EncoderOutput`` with ``sample_rate``, ``dim``,
``num_layers`` and ``frame_rate``. Formats are entries of :data:`IMPORTERS`:

- ``torchaudio``: torchaudio's models (:mod:`audiossl.interop.torchaudio`),
- ``transformers``: Hugging Face Wav2Vec2/HuBERT/WavLM/AST directories
  (:mod:`audiossl.interop.transformers`, :mod:`audiossl.interop.ast`; shared Hugging Face
  reading in :mod:`audiossl.interop.huggingface`),
- ``fairseq2``: fairseq2 wav2vec2 checkpoints and model cards (:mod:`audiossl.interop.fairseq2`),
  and fairseq1 wav2vec2 checkpoints through fairseq2's converters (:mod:`audiossl.interop.fairseq1`);
  both build :mod:`audiossl.interop.fairseq2_encoder`'s model.

Every model is an :class:`ImportedEncoder` (a :class:`~audiossl.models.SpeechEncoder`) whose
forward pass is written once in :mod:`audiossl.interop.base`; a format supplies its ``run``.

:mod:`audiossl.interop.convert` goes further for wav2vec2 / HuBERT / WavLM: it converts the same files
into audiossl's own ``wav2vec2`` encoder family (not a wrapper), which audiossl objectives can train
further (``run.init_from``, :mod:`audiossl.interop.init`).

Loading never runs code from a checkpoint (safetensors, ``torch.load(weights_only=True)``)
and never downloads (Hugging Face is read with ``local_files_only=True``).
"""

from __future__ import annotations

from pathlib import Path

from audiossl.errors import DataError
from audiossl.interop import ast as _ast  # noqa: F401  (registers the importer)
from audiossl.interop import fairseq2 as _fairseq2  # noqa: F401
from audiossl.interop import torchaudio as _torchaudio  # noqa: F401
from audiossl.interop import transformers as _transformers  # noqa: F401
from audiossl.interop.base import IMPORTERS, ImportedEncoder, Importer, read_torch_file, register_importer

__all__ = ["IMPORTERS", "ImportedEncoder", "Importer", "detect_format", "import_model", "register_importer"]


def _describe(path: Path) -> str:
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:20]) + (f" ... ({len(names) - 20} more)" if len(names) > 20 else "")
        return f"a directory holding: {shown or '(nothing)'}"
    return f"a file of {path.stat().st_size} bytes"


def detect_format(path: str | Path) -> str:
    """The name of the one format that recognises ``path``; a :class:`DataError` saying what was found otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path)
    matches = [name for name in IMPORTERS.names() if IMPORTERS.get(name).detect(path)]
    if not matches:
        raise DataError(
            f"not a checkpoint format audiossl can import ({', '.join(IMPORTERS.names())}); found {_describe(path)}"
            + _hint(path),
            path,
        )
    if len(matches) > 1:
        raise DataError(f"several formats match ({', '.join(matches)}); choose one with format=", path)
    return matches[0]


def _hint(path: Path) -> str:
    """What the file holds when it is a torch file no importer claims (helps tell architectures apart)."""
    if not path.is_file() or path.suffix == ".safetensors":
        return ""
    try:
        state = read_torch_file(path, mmap=True)
    except DataError as error:
        return f" ({error.message})"
    if not isinstance(state, dict):
        return f" (a {type(state).__name__})"
    keys = sorted(map(str, state))
    return f"; top-level keys: {', '.join(keys[:15])}" + (" ..." if len(keys) > 15 else "")


def import_model(path: str | Path, *, format: str | None = None) -> ImportedEncoder:
    """Load a foreign checkpoint as an audiossl encoder, in eval mode on the CPU.

    ``format`` forces one of :data:`IMPORTERS` (``audiossl interop list``); by default the
    format is recognised from the path.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or directory", path)
    name = format or detect_format(path)
    model = IMPORTERS.get(name).load(path)
    model.source = name
    return model.eval()
