"""Strict checks for config fields: numbers, integers and the exact set of a dataclass's fields.

Every check raises `ConfigError` naming the field, so a bad `synthetic_model_config.json` gives one
clear line.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from synthviz.errors import ConfigError


def number(value: Any, where: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: must be finite, got {value!r}")
    return value


def integer(value: Any, where: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value


def take_fields(cls: type, d: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> dict:
    """Check `d` holds exactly the dataclass's fields (defaults may be omitted)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(d) - names - set(skip)
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {sorted(extra)}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = required - set(d)
    if missing:
        raise ConfigError(f"{where}: missing field(s) {sorted(missing)}")
    return {k: v for k, v in d.items() if k in names}
