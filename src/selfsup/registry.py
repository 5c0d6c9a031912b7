"""A small name -> factory registry shared by backbones, methods and datasets."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from selfsup.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lower-case names to objects (classes or factory functions).

    Args:
        kind: what the registry holds ("method", "backbone", ...), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an object under ``name``."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = obj
            try:  # the name it was registered under, for messages (classes and functions)
                setattr(obj, "registered_name", name)
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; a clear error lists the valid names."""
        key = name.lower()
        if key not in self._items:
            valid = ", ".join(sorted(self._items))
            close = difflib.get_close_matches(key, list(self._items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {valid}.")
        return self._items[key]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
