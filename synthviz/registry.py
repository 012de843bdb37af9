"""A small name -> value registry (the pattern of sae_lens's `synthetic/registry.py`).

Generators register their classes under the `generator_name` sae_lens uses; other growing sets
(variation families, plots) can use the same class. Unknown names raise `ConfigError`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from synthviz.errors import ConfigError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """A dict of name -> value, in registration order, that refuses a name registered twice."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str, value: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = value
        return value

    def get_or_raise(self, name: str, where: str | None = None) -> T:
        if name not in self:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}; known: {sorted(self)}")
        return self[name]
