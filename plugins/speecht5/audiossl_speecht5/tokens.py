"""Tokenizers in task states: the ASR plugin's :class:`~audiossl_asr.tokenizer.Tokenizer` as JSON and back."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from audiossl_asr.tokenizer import Tokenizer


def tokenizer_to_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """A JSON-able description that :func:`tokenizer_from_json` turns back into the same tokenizer."""
    if tokenizer.kind == "char":
        return {"kind": "char", "units": list(tokenizer.units)}
    return {"kind": tokenizer.kind, "sentencepiece_model": base64.b64encode(tokenizer.model_proto).decode("ascii")}


def tokenizer_from_json(data: Mapping[str, Any]) -> Tokenizer:
    """The tokenizer :func:`tokenizer_to_json` described."""
    if data["kind"] == "char":
        return Tokenizer("char", units=list(data["units"]))
    return Tokenizer(data["kind"], model_proto=base64.b64decode(data["sentencepiece_model"]))
