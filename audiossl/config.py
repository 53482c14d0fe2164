"""Configs are dataclasses; YAML files and ``key=value`` overrides map onto them.

Unknown keys are errors (a typo must never be silently ignored), and so are values of
the wrong type. This module is the one config mechanism of audiossl: :func:`read_yaml` /
:func:`load_yaml` read files (errors name the file and the line of the offending key), and
:func:`apply_overrides` applies ``--set key.sub=value`` items, for pretraining, downstream
runs, k-means, HuBERT iterations and any future config alike.

Override semantics: a key path walks dataclass fields (each must exist), list items by index
(``iterations.1.layer=6``) and free-form mappings (``dict`` fields such as
``encoder.overrides``), inside which new keys may be created; the value is parsed as YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from audiossl.errors import ConfigError

C = TypeVar("C")


# ----------------------------------------------------------------------------- the YAML loader

#: Floats written with an exponent as YAML 1.2 reads them (``1e-3``, ``1E5``, ``-2.5e+3``, ``.5e1``).
#: PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent, so ``1e-3`` would be the
#: *string* ``'1e-3'`` and ``--set optim.lr=1e-3`` a type error.
SCIENTIFIC_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading scientific-notation numbers as floats (YAML 1.2 style).

    The one YAML loader of audiossl: config files, ``--set`` values and every other YAML a user
    types go through :func:`parse_yaml`. A value its tag cannot hold (``2001-13-45`` read as a
    date, ``!!int x``) is a ``yaml.YAMLError`` marking its line, where PyYAML raises ValueError.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, IndexError, KeyError) as error:
            problem = f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]} ({error})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


Loader.add_implicit_resolver("tag:yaml.org,2002:float", SCIENTIFIC_FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """One YAML document parsed safely, with ``1e-3`` a float (see :class:`Loader`).

    Every problem, nesting too deep for the parser included, is a ``yaml.YAMLError``.
    """
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _scientific(value: str) -> float | None:
    """``value`` as a float when it is a number in scientific notation, else None."""
    text = value.strip()
    return float(text.replace("_", "")) if SCIENTIFIC_FLOAT.match(text) else None


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
    if hint in (float, int) and isinstance(value, str) and _scientific(value) is not None:
        value = _scientific(value)  # '1e-3' quoted, or from a source read as YAML 1.1: still a number
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # run.max_steps=1e5
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


# ----------------------------------------------------------------------------- YAML files

KeyPath = tuple[str, ...]


def key_lines(text: str) -> dict[KeyPath, int]:
    """1-based line of every mapping key in a YAML document, by key path."""
    lines: dict[KeyPath, int] = {}

    def walk(node: Any, path: KeyPath) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):  # list items by index: ("iterations", "1", "layer")
            for index, value in enumerate(node.value):
                lines.setdefault((*path, str(index)), value.start_mark.line + 1)
                walk(value, (*path, str(index)))

    try:
        walk(yaml.compose(text, Loader=Loader), ())
    except (yaml.YAMLError, RecursionError):
        pass
    return lines


def read_yaml(path: str | Path, what: str = "a mapping") -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """The mapping of a YAML file and the line of each of its keys (see :func:`key_lines`).

    A missing file, invalid YAML (with its line) and a document that is not a mapping
    (``what`` says which mapping) are :class:`ConfigError` naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", path) from None
    try:
        data = parse_yaml(text) or {}
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        detail = str(error).replace('"<unicode string>"', str(path))  # PyYAML's marks name the text, not the file
        raise ConfigError(f"invalid YAML: {detail}", path, None if line is None else line + 1) from None
    if not isinstance(data, dict):
        raise ConfigError(f"a config file must be {what}", path)
    return data, key_lines(text)


def dataclass_of(hint: Any) -> type | None:
    """The dataclass a field hint holds (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    for option in typing.get_args(hint):
        if dataclasses.is_dataclass(option):
            return option
    return None


def _is_mapping(hint: Any) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


def _list_item(hint: Any) -> Any:
    """The item hint of a ``list[X]`` / ``tuple[X, ...]`` field hint (also inside ``| None``), else None."""
    for option in (hint, *typing.get_args(hint)):
        if typing.get_origin(option) in (list, tuple):
            args = typing.get_args(option)
            return args[0] if args else Any
    return None


def _field_hint(cls: type, key: str) -> Any:
    """The type hint of init field ``key`` of dataclass ``cls``; None when there is no such field."""
    if not dataclasses.is_dataclass(cls):
        return None
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    return typing.get_type_hints(cls)[key] if key in fields else None


def _unknown_key(cls: type, data: Any, path: KeyPath, free: dict[KeyPath, type]) -> tuple[KeyPath, type] | None:
    """The first key path of ``data`` that ``cls`` (recursively) does not have, with the class that lacks it.

    ``free``: key paths of free-form mappings whose keys must fit a class known only at run time
    (``encoder.overrides`` -> the encoder family's config).
    """
    if not isinstance(data, dict) or not dataclasses.is_dataclass(cls):
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for key, value in data.items():
        child = (*path, str(key))
        if key not in fields:
            return child, cls
        hint = hints[key]
        nested = dataclass_of(hint) or (free.get(child) if _is_mapping(hint) else None)
        if nested is not None:
            found = _unknown_key(nested, value, child, free)
            if found is not None:
                return found
        item = _list_item(hint)
        if dataclasses.is_dataclass(item) and isinstance(value, list):
            for index, element in enumerate(value):
                found = _unknown_key(item, element, (*child, str(index)), free)
                if found is not None:
                    return found
    return None


def check_keys(
    cls: type,
    data: dict[str, Any],
    source: str | Path | None = None,
    lines: dict[KeyPath, int] | None = None,
    free: dict[KeyPath, type] | None = None,
) -> None:
    """Raise a :class:`ConfigError` naming the first unknown key of a raw config (and its line)."""
    found = _unknown_key(cls, data, (), free or {})
    if found is None:
        return
    path, owner = found
    known = ", ".join(sorted(f.name for f in dataclasses.fields(owner) if f.init))
    raise ConfigError(
        f"unknown key {'.'.join(path)!r} ({owner.__name__} has: {known})", source, (lines or {}).get(path)
    )


_WHERE = re.compile(r"^(?P<path>[A-Za-z_][\w.\[\]]*):")
_KEY_PATH = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.\w+|\[\d+\])+")


def _line_of_key(text: str, lines: dict[KeyPath, int], shortest: int) -> int | None:
    path = tuple(re.sub(r"\[(\d+)\]", r".\1", text).split("."))
    return next((lines[path[:n]] for n in range(len(path), shortest - 1, -1) if path[:n] in lines), None)


def with_line(error: ConfigError, source: str | Path, lines: dict[KeyPath, int]) -> ConfigError:
    """The same error naming ``source`` and the line of the key its message names.

    A message starting ``a.b[2].c:`` names that key, looked up as ``("a", "b", "2", "c")``, then
    as its shorter prefixes; otherwise the first dotted key path in the message that is a key of
    the file (``optim.lr and optim.eps must be > 0`` -> the line of ``optim.lr``).
    """
    match = _WHERE.match(error.message)
    line = _line_of_key(match["path"], lines, 1) if match else None
    if line is None:
        for found in _KEY_PATH.finditer(error.message):
            line = _line_of_key(found.group(), lines, 2)
            if line is not None:
                break
    return ConfigError(error.message, source, line)


def build_config(
    cls: type[C],
    data: dict[str, Any],
    source: str | Path | None = None,
    lines: dict[KeyPath, int] | None = None,
    *,
    free: dict[KeyPath, type] | None = None,
    validate: Callable[[C], None] | None = None,
) -> C:
    """Check and build dataclass ``cls`` from a raw mapping; errors name ``source`` and the key's line.

    Unknown keys (also inside the ``free`` mappings), wrong types and values, and what
    ``validate`` raises for the built config are :class:`ConfigError`.
    """
    lines = lines or {}
    check_keys(cls, data, source, lines, free)
    try:
        config = from_dict(cls, data)
        if validate is not None:
            validate(config)
    except ConfigError as error:
        if source is None or error.path is not None:
            raise
        raise with_line(error, source, lines) from None
    return config


def load_yaml(cls: type[C], path: str | Path) -> C:
    """Read a YAML file into dataclass ``cls`` (errors name the file and the key's line)."""
    data, lines = read_yaml(path)
    return build_config(cls, data, path, lines)


# ----------------------------------------------------------------------------- --set key=value


def override_item(key: str, value: Any) -> str:
    """The ``key=value`` item that sets ``key`` to ``value`` (written as JSON, which YAML reads back)."""
    return f"{key}={json.dumps(value)}"


def set_values(data: dict[str, Any], overrides: list[str], schema: type | None = None) -> dict[str, Any]:
    """A copy of the raw mapping ``data`` with ``key.sub=value`` items applied (values parsed as YAML).

    With a dataclass ``schema``, every key of a fixed section must be a field of it; inside
    free-form mappings new keys may be created (checked later against the class they configure).
    List items are addressed by index. Without a schema any key may be created.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not key=value")
        try:
            value = parse_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {error}") from None
        parts = key.split(".")
        node: Any = data
        hint: Any = schema
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            cls = dataclass_of(hint) if hint is not None else None
            item_hint = _list_item(hint) if hint is not None else None
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"--set {item!r}: {where!r} is not an item of a list of {len(node)}")
                index: Any = int(part)
                hint = item_hint
            elif isinstance(node, dict):
                index = part
                if cls is not None:
                    hint = _field_hint(cls, part)
                    if hint is None:
                        raise ConfigError(f"--set {item!r}: unknown key {where!r}")
                else:
                    hint = None  # a free-form mapping (or no schema): anything below goes
            else:
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:depth])!r} is not a section")
            if last:
                node[index] = value
            else:
                if not isinstance(node[index] if isinstance(node, list) else node.get(index), (dict, list)):
                    node[index] = {}
                node = node[index]
    return data


def apply_overrides(config: Any, overrides: list[str], *, schema: type | None = None) -> Any:
    """Apply ``key.sub=value`` items (the ``--set`` option) to a config; the one implementation.

    ``config``: a dataclass instance (returns a new, checked instance of its class), or a raw
    mapping (returns the changed mapping; ``schema`` is the dataclass it must fit). See
    :func:`set_values` for the semantics.
    """
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        cls = type(config)
        return from_dict(cls, set_values(to_dict(config), overrides, cls))
    if not isinstance(config, dict):
        raise TypeError(f"apply_overrides takes a dataclass config or a mapping, got {type(config).__name__}")
    return set_values(config, overrides, schema)
