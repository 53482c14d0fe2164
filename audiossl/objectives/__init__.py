"""Self-supervised objectives: encoder + heads + masking + loss, chosen by name.

Importing this package registers every objective in :data:`OBJECTIVES`; build one with
:func:`create_objective` (``create_objective("mspm", encoder)``).
"""

from __future__ import annotations

# Objectives register themselves on import; one line per objective.
from audiossl.objectives import bestrq as bestrq  # noqa: F401
from audiossl.objectives import data2vec as data2vec  # noqa: F401
from audiossl.objectives import dino as dino  # noqa: F401
from audiossl.objectives import distill as distill  # noqa: F401
from audiossl.objectives import hubert as hubert  # noqa: F401
from audiossl.objectives import mspm as mspm  # noqa: F401
from audiossl.objectives import speecht5 as speecht5  # noqa: F401
from audiossl.objectives import w2vbert as w2vbert  # noqa: F401
from audiossl.objectives import wav2vec2 as wav2vec2  # noqa: F401
from audiossl.objectives import wavlm as wavlm  # noqa: F401
from audiossl.objectives.base import (
    OBJECTIVES,
    FeatureInputs,
    LossOutput,
    Objective,
    ObjectiveSpec,
    create_objective,
    register_objective,
)
from audiossl.objectives.masking import MaskConfig, sample_mask

__all__ = [
    "OBJECTIVES",
    "FeatureInputs",
    "LossOutput",
    "MaskConfig",
    "Objective",
    "ObjectiveSpec",
    "create_objective",
    "list_objectives",
    "register_objective",
    "sample_mask",
]


def list_objectives() -> list[tuple[str, str]]:
    """Every registered (name, one-line description), by name."""
    return [(name, OBJECTIVES.get(name).description) for name in OBJECTIVES.names()]
