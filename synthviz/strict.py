"""Strict construction of a dataclass from a JSON object: a field it does not have is an error."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from synthviz.errors import ConfigError

T = TypeVar("T")


def from_fields(cls: type[T], d: dict[str, Any] | None, what: str) -> T:
    """`cls(**d)` (`cls()` for None), refusing a non-object or unknown fields in one line."""
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be an object, got {type(d).__name__}")
    extra = set(d) - {f.name for f in dataclasses.fields(cls)}
    if extra:
        raise ConfigError(f"{what}: unknown field(s) {sorted(extra)}")
    return cls(**d)
