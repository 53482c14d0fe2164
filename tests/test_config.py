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
