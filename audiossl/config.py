"""Configs are dataclasses; YAML files and ``key=value`` overrides map onto them.

Unknown keys are errors (a typo must never be silently ignored), and so are values of
the wrong type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from audiossl.errors import ConfigError

C = TypeVar("C")


def _check_type(value: Any, hint: Any, where: str, source: str | None) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where, source)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {hint}", source)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(hint)}", source)
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", source)
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        items = [_check_type(v, item_hint, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}", source)
        return from_dict(hint, value, source=source, prefix=f"{where}.")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type):
        if hint is not bool and isinstance(value, bool):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}", source)
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}", source)
    return value


def from_dict(cls: type[C], data: dict[str, Any], source: str | Path | None = None, prefix: str = "") -> C:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping for {cls.__name__}, got {type(data).__name__}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(fields))}",
            source,
        )
    kwargs = {k: _check_type(v, hints[k], prefix + k, None if source is None else str(source)) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{cls.__name__}: {error}", source) from None


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (for YAML dumps and checkpoints)."""
    return dataclasses.asdict(config)


def load_yaml(cls: type[C], path: str | Path) -> C:
    """Read a YAML file into dataclass ``cls``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        raise ConfigError(f"invalid YAML: {error}", path, None if line is None else line + 1) from None
    return from_dict(cls, data, source=path)


def apply_overrides(config: C, overrides: list[str]) -> C:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a dataclass config."""
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        node[parts[-1]] = yaml.safe_load(raw)
    return from_dict(type(config), data)
