"""One small generic registry, used for data sources, models, metrics and augmentations.

Example:
    >>> SHAPES: Registry[type] = Registry("example shape")
    >>> @SHAPES.register("square")
    ... class Square: ...
    >>> SHAPES.get("square").__name__
    'Square'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from visionbench.errors import UserError

T = TypeVar("T")

# Every registry by kind, so a config field can name the registry it draws from without
# importing the module that fills it.
_CATALOGUE: dict[str, Registry] = {}


def catalogue(kind: str) -> Registry:
    """The registry of `kind` (e.g. "metric"); it exists once its module was imported."""
    try:
        return _CATALOGUE[kind]
    except KeyError:
        raise LookupError(f"no {kind} registry is loaded: import the module that defines "
                          "it before validating a config (visionbench.config does)") from None


class Registry(Generic[T]):
    """A name -> object mapping filled by decorators; unknown names suggest the closest one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        if kind in _CATALOGUE:
            raise ValueError(f"a {kind} registry exists already")
        _CATALOGUE[kind] = self

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering `obj` under `name`; a name can be registered once."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """The entry called `name`, or a `UserError` naming the closest registered names."""
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """The message for a name that is not registered: the closest one and all of them."""
        close = difflib.get_close_matches(str(name), self._entries, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown {self.kind} {name!r}; {hint}known: {', '.join(sorted(self._entries))}"

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs sorted by name."""
        return sorted(self._entries.items())
