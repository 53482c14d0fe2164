"""Encoders behind one interface: AST, bidirectional Mamba, Conformer, SpeechT5, wav2vec 2.0/HuBERT/WavLM.

Importing this package registers every encoder family in :data:`ENCODERS`; pick one with
:func:`create_encoder` (``create_encoder("ast", "tiny")``) and list them with
:func:`list_encoders`.
"""

from __future__ import annotations

import torch

# Encoder families register themselves on import; one line per family.
from audiossl.encoders import ast as ast  # noqa: F401
from audiossl.encoders import conformer as conformer  # noqa: F401
from audiossl.encoders import mamba as mamba  # noqa: F401
from audiossl.encoders import speecht5 as speecht5  # noqa: F401
from audiossl.encoders import wav2vec2 as wav2vec2  # noqa: F401
from audiossl.encoders.base import ENCODERS, Encoder, EncoderOutput, EncoderSpec, create_encoder, register_encoder
from audiossl.encoders.embed import (
    EmbeddedTokens,
    InputConfig,
    TokenEmbedding,
    TokenFeatures,
    apply_token_mask,
    gather_kept,
)

__all__ = [
    "ENCODERS",
    "EmbeddedTokens",
    "Encoder",
    "EncoderOutput",
    "EncoderSpec",
    "InputConfig",
    "TokenEmbedding",
    "TokenFeatures",
    "apply_token_mask",
    "create_encoder",
    "gather_kept",
    "list_encoders",
    "register_encoder",
]


def list_encoders() -> list[tuple[str, str, int]]:
    """Every registered (family, preset, number of parameters), families and presets in order.

    Builds each preset on the meta device, so no memory is allocated and even base models
    are counted instantly.
    """
    rows = []
    for family in ENCODERS.names():
        spec = ENCODERS.get(family)
        for preset, make_config in spec.presets.items():
            with torch.device("meta"):
                model = spec.factory(make_config())
            rows.append((family, preset, sum(p.numel() for p in model.parameters())))
    return rows
