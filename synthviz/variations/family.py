"""What a variation family is: its settings (fields of `Variation`, with their CLI flags as data),
how it checks them, applies them to a model and describes them.

A family is one module defining a `Family` subclass and one entry in `registry.FAMILIES`; the
`Variation` fields, the CLI flags (`synthviz.cli`) and the order of application follow from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from synthviz.errors import ConfigError, Progress


@dataclass(frozen=True)
class Setting:
    """One field of `Variation` and its CLI flag.

    `option` marks a field that only qualifies the family's other fields (it does not make a
    variation by itself, and `to_dict` keeps it only when the family is set). `switch` makes the
    flag an on/off flag (`--no-rescale`) that sets the field to False.
    """
    name: str
    annotation: str
    help: str
    default: Any = None
    flag: str | None = None  # default: "--" + name with dashes
    parse: Callable[[str], Any] | None = None  # argparse type; None for a switch
    switch: bool = False
    option: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def cli_dest(self) -> str:
        """The argparse attribute the flag fills (a switch keeps its flag's own name)."""
        return self.cli_flag.lstrip("-").replace("-", "_") if self.switch else self.name


class Family:
    """A variation family. Subclasses set `name` and `settings` and override the methods."""
    name: str = ""
    settings: tuple[Setting, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.settings)

    def is_set(self, v: Any) -> bool:
        """Whether the variation `v` asks this family for a change."""
        return any(getattr(v, s.name) is not None for s in self.settings if not s.option)

    def check(self, v: Any, set_: Callable[[str, Any], None]) -> None:
        """Validate this family's fields of `v` (and their relation to earlier families'),
        normalizing them through `set_(name, value)`; raise `ConfigError` with one line."""

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        """A new model with this family's change; untouched tensors are shared."""
        raise NotImplementedError

    def describe(self, v: Any) -> str:
        """This family's change in words (only called when `is_set`)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------- shared checks

def finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"variation {name} must be a finite number, got {value!r}")
    return float(value)


def integer(value: Any, name: str, low: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"variation {name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"variation {name} must be at least {low}, got {value}")
    return value


def check_integer(v: Any, set_: Callable[[str, Any], None], name: str, low: int) -> None:
    if getattr(v, name) is not None:
        set_(name, integer(getattr(v, name), name, low))


def base_probabilities(cfg: Any) -> torch.Tensor:
    """The pre-compensation probabilities the config's generator gives (deterministic)."""
    return cfg.firing_probability.generate(cfg.num_features, seed=cfg.sub_seed(0))


def reuse(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`old` when equal to `new` (keeps sharing the source tensor), else `new`."""
    new = new.to(old.dtype)
    return old if new.shape == old.shape and torch.equal(new, old) else new
