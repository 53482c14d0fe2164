"""The encoder-objective seam is declared: typed inputs, extract_features, no hooks or attribute probing."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch
from objective_helpers import FAMILIES, inputs_for, tiny_encoder

import audiossl.objectives
from audiossl.encoders.embed import TokenFeatures
from audiossl.objectives import OBJECTIVES
from audiossl.objectives.base import Objective

OBJECTIVES_DIR = Path(audiossl.objectives.__file__).parent


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_forward_takes_the_declared_inputs_then_step_and_generator(name: str) -> None:
    cls = OBJECTIVES.get(name).factory
    assert isinstance(cls, type) and issubclass(cls, Objective)
    assert dataclasses.is_dataclass(cls.inputs_type)
    parameters = list(inspect.signature(cls.forward).parameters)[1:]  # without self
    fields = [item.name for item in dataclasses.fields(cls.inputs_type)]
    assert parameters == [*fields, "step", "generator"]


def test_objectives_use_no_hooks_and_no_attribute_probing() -> None:
    for path in sorted(OBJECTIVES_DIR.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"register_forward(_pre)?_hook", text), path.name
        assert not re.search(r"getattr\(\s*(self\.)?encoder", text), path.name
        assert '"embedding"' not in text, path.name
        assert "self.generator" not in text, path.name


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["patch", "frame", "waveform"])
def test_extracted_features_feed_the_same_pass(family: str, kind: str) -> None:
    encoder = tiny_encoder(family, kind).eval()
    lengths = [4000, 2500] if kind == "waveform" else [40, 26]
    features, lengths = inputs_for(encoder, lengths)
    extracted = encoder.extract_features(features, lengths)
    assert isinstance(extracted, TokenFeatures)
    assert torch.equal(extracted.lengths, encoder.token_lengths(lengths))
    assert extracted.tokens.shape[-1] == encoder.token_dim
    assert extracted.freq_patches == encoder.freq_patches
    assert (extracted.frontend is not None) == (kind == "waveform")
    mask = torch.zeros(extracted.tokens.shape[:2], dtype=torch.bool)
    mask[:, 1] = True
    with torch.no_grad():
        plain = encoder(features, lengths, mask=mask)
        reused = encoder(features, lengths, mask=mask, extracted=extracted)
    assert torch.equal(plain.last, reused.last)
    assert torch.equal(plain.lengths, reused.lengths)
