"""Fuzzing the YAML config loader and ``--set`` parsing: a config either builds or raises ConfigError.

YAML texts are runs of tokens that make YAML's hard cases likely: indentation, flow brackets,
quotes, anchors and aliases (recursive ones too), tags (``!!int``, ``!!timestamp``,
``!!python/object``), dates, scientific numbers, duplicate and non-string keys, tabs.
``--set`` items combine real and made-up key paths (list indices, free-form mappings) with such values.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from audiossl.config import apply_overrides, load_yaml, parse_yaml
from audiossl.errors import ConfigError
from audiossl.train.config import PretrainConfig, preset_path, resolve_config


@dataclass(kw_only=True)
class Inner:
    size: int = 4
    """A size."""
    rate: float = 0.5
    """A rate."""


@dataclass(kw_only=True)
class Config:
    name: str = "x"
    """A name."""
    lr: float = 1e-3
    """A float."""
    kind: Literal["a", "b"] = "a"
    """A choice."""
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    """A list."""
    inner: Inner = field(default_factory=Inner)
    """A section."""
    items: list[Inner] = field(default_factory=lambda: [Inner()])
    """A list of sections."""
    extra: dict = field(default_factory=dict)
    """A free-form mapping."""
    maybe: int | None = None
    """Optional."""


YAML_TOKENS = [
    "name", "lr", "kind", "sizes", "inner", "size", "rate", "items", "extra", "maybe", "nope", "1", "true", "null",
    ": ", ":", "\n", "\n  ", "\n    ", "\n- ", "- ", "  ", "\t", "[", "]", "{", "}", ", ", "'", '"', "#", "? ",
    "&a ", "*a", "!!int ", "!!float ", "!!str ", "!!timestamp ", "!!binary ", "!!python/object:os.system ", "!!set ",
    "1e-3", "-2.5e+3", ".5e1", "1E5", "0.5", "-1", "1e400", ".nan", ".inf", "0x1F", "0o17", "1:30", "1_000",
    "2001-13-45", "2001-02-03", "2001-12-14t21:59:43.10-05:00", "~", "a", "b", "é", "\\u00e9", "%YAML 1.1\n", "---\n",
    "...\n", "|\n  ", ">\n  ", "<<: ", "\x00", "\ufeff",
]  # fmt: skip
YAML_TEXT = st.lists(st.sampled_from(YAML_TOKENS), max_size=30).map("".join)

_ROOT = Path(tempfile.mkdtemp(prefix="audiossl-fuzz-config-"))


def _write(text: str, name: str = "config.yaml") -> Path:
    path = Path(tempfile.mkdtemp(dir=_ROOT)) / name
    path.write_text(text, encoding="utf-8")
    return path


@fuzz_settings(2000)
@given(text=YAML_TEXT)
def test_parse_yaml_raises_only_yaml_errors(text):
    import yaml

    try:
        parse_yaml(text)
    except yaml.YAMLError:
        pass


@fuzz_settings(2000)
@given(text=YAML_TEXT)
def test_load_yaml_builds_or_raises_config_error_naming_the_file(text):
    path = _write(text)
    try:
        config = load_yaml(Config, path)
    except ConfigError as error:
        assert error.path == str(path), str(error)
        return
    assert isinstance(config, Config)


PRESET_LINES = preset_path("mspm-ast-tiny").read_text(encoding="utf-8").splitlines()


@fuzz_settings(300)
@given(
    line=st.integers(0, len(PRESET_LINES) - 1),
    replacement=st.lists(st.sampled_from(YAML_TOKENS), max_size=6).map("".join),
    keep_indent=st.booleans(),
)
def test_a_mutated_pretraining_config_builds_or_raises_config_error(line, replacement, keep_indent):
    lines = list(PRESET_LINES)
    original = lines[line]
    indent = original[: len(original) - len(original.lstrip())] if keep_indent else ""
    key = original.strip().split(":")[0] + ": " if ":" in original and keep_indent else ""
    lines[line] = indent + key + replacement
    path = _write("\n".join(lines) + "\n")
    try:
        config = resolve_config(path)
    except ConfigError as error:
        assert error.path in (str(path), None), str(error)
        return
    assert isinstance(config, PretrainConfig)


KEYS = [
    "name", "lr", "kind", "sizes", "sizes.0", "sizes.5", "inner", "inner.size", "inner.rate", "inner.nope",
    "items.0.size", "items.1.size", "items.x", "extra.anything", "extra.a.b", "maybe", "nope", "lr.sub",
    "", ".", "a..b",
]  # fmt: skip
ITEMS = st.builds(
    lambda key, sep, value: f"{key}{sep}{value}",
    st.one_of(st.sampled_from(KEYS), st.text(max_size=12)),
    st.sampled_from(["=", "==", ":", "", " = "]),
    st.one_of(YAML_TEXT, st.text(max_size=12)),
)


@fuzz_settings(2000)
@given(items=st.lists(ITEMS, min_size=1, max_size=4))
def test_set_items_apply_or_raise_config_error(items):
    try:
        config = apply_overrides(Config(), items)
    except ConfigError:
        return
    assert isinstance(config, Config)


PRETRAIN_KEYS = [
    "optim.lr", "optim.betas", "optim.betas.1", "run.max_steps", "run.precision", "data.sample_rate",
    "encoder.overrides.dim", "encoder.overrides.input.kind", "objective.config.mask.ratio",
    "objective.config.mask.count",
    "objective.name", "encoder.family", "data.frontend", "data.frontend_config.num_mel_bins", "optim.lrr", "run",
]  # fmt: skip
VALUES = [
    "1e-3",
    "-1",
    "0",
    "1.0",
    "2",
    "[0.9, 0.98]",
    "[1",
    "fast",
    "null",
    "ast",
    "conformer",
    "patch",
    "{}",
    "1e400",
]


@fuzz_settings(100)
@given(items=st.lists(st.builds("{}={}".format, st.sampled_from(PRETRAIN_KEYS), st.sampled_from(VALUES)), max_size=3))
def test_pretraining_set_items_build_or_raise_config_error(items):
    try:
        config = resolve_config("mspm-ast-tiny", items)
    except ConfigError:
        return
    assert isinstance(config, PretrainConfig)
