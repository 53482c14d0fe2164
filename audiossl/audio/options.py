"""Config resolution shared by the functional front-ends: a config, a mapping, or keywords."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from audiossl.config import from_dict

C = TypeVar("C")


def resolve_config(cls: type[C], config: C | Mapping[str, Any] | None, options: Mapping[str, Any]) -> C:
    """``config`` (an instance, a mapping from YAML, or None for defaults) updated with ``options``.

    Unknown option names and wrong types raise :class:`~audiossl.errors.ConfigError`, as in
    YAML configs.
    """
    if config is None:
        config = cls()
    elif isinstance(config, Mapping):
        config = from_dict(cls, dict(config))
    elif not isinstance(config, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(config).__name__}")
    if options:
        data = {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.init}
        data.update(options)
        config = from_dict(cls, data)
    return config
