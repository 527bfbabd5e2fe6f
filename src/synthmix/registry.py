"""Registries: a name in params or a metrics file maps to the code that provides it.

In the spirit of lm-evaluation-harness: a decorator registers a diversity metric, a judge rubric or a
backend by name, so adding one touches the file that defines it (plus its test) and nothing that lists them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name` (a name may be registered once)."""

        def decorate(entry: T) -> T:
            self.add(name, entry)
            return entry

        return decorate

    def add(self, name: str, entry: T) -> None:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        """Unregister `name` (tests that register an entry of their own clean up with this)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise KeyError(self.unknown(name))
        return self._entries[name]

    def unknown(self, name: str, extra: tuple[str, ...] = ()) -> str:
        """The message for a name that is not registered: what exists and the closest match. `extra`: names
        that exist without being registered yet (built-ins imported on first use), listed first, in order."""
        valid = [*extra, *(e for e in self._entries if e not in extra)]
        hint = difflib.get_close_matches(name, valid, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown {self.kind} '{name}' (available: {', '.join(valid) or 'none'}){suggestion}"

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
