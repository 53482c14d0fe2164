"""One typed registry per kind of component (front-ends, encoders, objectives...).

Components register under a name with a decorator; users pick them by name. Unknown
names give a :class:`~audiossl.errors.ConfigError` listing what exists. The first lookup in
any registry loads the installed extensions (:mod:`audiossl.extensions`), so third-party
encoders, objectives, front-ends and checkpoint importers are found by name like built-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from audiossl.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> component mapping for one kind of component."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``; a name may be used once."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` (a :class:`KeyError` if it is not registered); for tests and extension reloads."""
        return self._items.pop(name)

    def get(self, name: str) -> T:
        _load_extensions()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        _load_extensions()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        _load_extensions()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        _load_extensions()
        return len(self._items)


def _load_extensions() -> None:
    """Load the installed extensions once, on the first lookup in any registry."""
    # Imported here: extensions import third-party modules, which import the registries themselves.
    from audiossl.extensions import ensure_extensions

    ensure_extensions()
