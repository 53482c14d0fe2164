"""The objective registry: lookup by name, clear errors, configs from mappings."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from objective_helpers import tiny_encoder

from audiossl.errors import ConfigError
from audiossl.objectives import OBJECTIVES, LossOutput, create_objective, list_objectives
from audiossl.objectives.mspm import MSPMConfig, MSPMObjective
from audiossl.objectives.wav2vec2 import Wav2Vec2Config


def test_builtin_objectives_are_registered() -> None:
    assert {"mspm", "wav2vec2", "w2vbert"} <= set(OBJECTIVES.names())
    assert all(description for _, description in list_objectives())


def test_unknown_objective_lists_the_known_ones() -> None:
    encoder = tiny_encoder("ast", "patch")
    with pytest.raises(ConfigError, match=r"unknown objective 'hubbert'; known: .*mspm.*w2vbert.*wav2vec2"):
        create_objective("hubbert", encoder)


def test_config_from_mapping_and_unknown_keys() -> None:
    encoder = tiny_encoder("ast", "patch")
    objective = create_objective("mspm", encoder, {"generative_weight": 2.0, "mask": {"kind": "random", "count": 8}})
    assert isinstance(objective, MSPMObjective)
    assert objective.config.generative_weight == 2.0 and objective.config.mask.count == 8
    with pytest.raises(ConfigError, match="genrative_weight"):
        create_objective("mspm", encoder, {"genrative_weight": 2.0})
    with pytest.raises(ConfigError, match="takes a MSPMConfig, got Wav2Vec2Config"):
        create_objective("mspm", encoder, Wav2Vec2Config())


@pytest.mark.parametrize("name", ["mspm", "wav2vec2", "w2vbert", "hubert"])
def test_every_config_field_has_a_docstring(name: str) -> None:
    """Configs document every field (a string literal right under it), nested configs included."""
    import ast
    import inspect

    def documented(cls: type) -> set[str]:
        names: set[str] = set()
        for klass in cls.__mro__:
            if not dataclasses.is_dataclass(klass):
                continue
            body = ast.parse(inspect.getsource(klass)).body[0].body
            for node, following in zip(body[:-1], body[1:], strict=True):
                if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
                    if isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                        names.add(node.target.id)
        return names

    pending = [OBJECTIVES.get(name).config_class]
    while pending:
        cls = pending.pop()
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields <= documented(cls), f"{cls.__name__}: undocumented {fields - documented(cls)}"
        hints = typing.get_type_hints(cls)
        pending += [hints[f] for f in fields if dataclasses.is_dataclass(hints[f])]


def test_loss_output_defaults() -> None:
    import torch

    out = LossOutput(total=torch.tensor(1.0))
    assert out.parts == {} and out.metrics == {}
    assert MSPMConfig().mask.count == 400
