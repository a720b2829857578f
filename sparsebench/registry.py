"""A name -> entry registry with wildcard listing, shared by models, datasets and later plugins."""

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import SparsebenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries; `kind` names what is registered in error messages."""

    def __init__(self, kind: str, list_command: str | None = None):
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add `entry` under `name`; a name can be registered once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str, wrap: Callable[[Callable], T]) -> Callable[[Callable], Callable]:
        """A decorator that registers `wrap(fn)` under `name` and returns `fn` unchanged."""

        def deco(fn: Callable) -> Callable:
            self.register(name, wrap(fn))
            return fn

        return deco

    def get(self, name: str) -> T:
        """The entry for `name`, or a SparsebenchError suggesting close names."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            where = f" `{self.list_command}` lists them." if self.list_command else ""
            raise SparsebenchError(f"unknown {self.kind} '{name}'.{hint}{where}") from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
