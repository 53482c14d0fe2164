from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from audiossl.config import apply_overrides, from_dict, load_yaml
from audiossl.errors import ConfigError


@dataclass(kw_only=True)
class Inner:
    size: int = 4
    """A size."""


@dataclass(kw_only=True)
class Outer:
    name: str = "x"
    """A name."""
    rate: float = 1.0
    """A rate."""
    kind: Literal["a", "b"] = "a"
    """A choice."""
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    """Several sizes."""
    inner: Inner = field(default_factory=Inner)
    """A nested section."""
    maybe: int | None = None
    """Optional."""


def test_from_dict_builds_nested_and_coerces_int_to_float():
    config = from_dict(Outer, {"rate": 3, "inner": {"size": 7}, "sizes": [5], "maybe": None})
    assert config.rate == 3.0 and isinstance(config.rate, float)
    assert config.inner.size == 7
    assert config.sizes == [5]


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"nmae": "y"}, "nmae"),
        ({"inner": {"szie": 1}}, "inner.szie"),
        ({"rate": "fast"}, "rate"),
        ({"kind": "c"}, "kind"),
        ({"sizes": [1, "two"]}, "sizes[1]"),
        ({"inner": {"size": True}}, "inner.size"),
    ],
)
def test_unknown_keys_and_wrong_types_are_errors(data, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        from_dict(Outer, data)


def test_yaml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: ok\nrate: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(Outer, path)
    assert info.value.path == str(path)
    assert info.value.line is not None

    path.write_text("name: ok\nextra: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="extra"):
        load_yaml(Outer, path)


def test_overrides_parse_values_and_reject_unknown_keys():
    config = apply_overrides(Outer(), ["inner.size=9", "rate=0.5", "kind=b"])
    assert (config.inner.size, config.rate, config.kind) == (9, 0.5, "b")
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(Outer(), ["inner.nope=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Outer(), ["rate"])


# Scientific notation is a number wherever a user types a value (YAML 1.1 would read `1e-3` as a string).
SCIENTIFIC = [("1e-3", 1e-3), ("1E5", 1e5), ("-2.5e+3", -2500.0), (".5e1", 5.0), ("1.0e-3", 1e-3), ("2e0", 2.0)]


@pytest.mark.parametrize(("text", "number"), SCIENTIFIC)
def test_scientific_notation_is_a_float_in_files_and_set_items(tmp_path, text, number):
    from audiossl.config import parse_yaml

    assert parse_yaml(text) == number and isinstance(parse_yaml(text), float)
    assert apply_overrides(Outer(), [f"rate={text}"]).rate == number
    path = tmp_path / "c.yaml"
    path.write_text(f"rate: {text}\n", encoding="utf-8")
    assert load_yaml(Outer, path).rate == number


def test_numbers_stay_numbers_and_words_stay_words():
    from audiossl.config import parse_yaml

    assert [parse_yaml(t) for t in ("1", "0", "-3", "1.5")] == [1, 0, -3, 1.5]
    assert isinstance(parse_yaml("1"), int)
    assert [parse_yaml(t) for t in ("1e", "e3", "1e-", "abc", "1.2.3")] == ["1e", "e3", "1e-", "abc", "1.2.3"]


def test_typed_fields_accept_scientific_text_and_integral_floats():
    # A quoted '1e-3' for a float field, and 1e3 for an int field, are the numbers the user meant.
    assert from_dict(Outer, {"rate": "1e-3"}).rate == 1e-3
    assert apply_overrides(Outer(), ["inner.size=1e3"]).inner.size == 1000
    assert isinstance(apply_overrides(Outer(), ["inner.size=1e3"]).inner.size, int)
    with pytest.raises(ConfigError, match="inner.size"):
        apply_overrides(Outer(), ["inner.size=1.5e0"])  # 1.5 is not an int
    with pytest.raises(ConfigError, match="rate"):
        from_dict(Outer, {"rate": "fast"})


def test_set_optim_lr_in_scientific_notation_for_pretraining():
    from audiossl.train.config import resolve_config

    config = resolve_config("mspm-ast-tiny", ["optim.lr=1e-3", "run.max_steps=2e2"])
    assert config.optim.lr == 1e-3 and config.run.max_steps == 200


def test_a_check_naming_a_key_anywhere_in_its_message_gets_that_keys_line(tmp_path):
    from audiossl.train.config import preset_path, resolve_config

    path = tmp_path / "c.yaml"
    text = preset_path("mspm-ast-tiny").read_text(encoding="utf-8")
    path.write_text(text.replace("  lr: 5.0e-4", "  lr: -1e-3"), encoding="utf-8")
    line = next(i for i, row in enumerate(path.read_text().splitlines(), start=1) if row.startswith("  lr:"))
    with pytest.raises(ConfigError) as info:
        resolve_config(path)
    assert (info.value.path, info.value.line) == (str(path), line), str(info.value)
    assert "optim.lr" in info.value.message
