"""Magnitude generators (sae_lens's `mean_firing_magnitudes` / `std_firing_magnitudes` configs).

A magnitude spec is a plain number (the same value for every feature) or one of these generators.
`magnitude_values`, `magnitude_prefix` and the JSON helpers accept either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from synthviz.config_fields import number
from synthviz.errors import ConfigError
from synthviz.generators.base import Generator, GeneratorRegistry

MAGNITUDES = GeneratorRegistry("magnitude generator")


class MagnitudeGenerator(Generator):
    """A per-feature magnitude generator."""

    def prefix(self, values: torch.Tensor, n: int) -> MagnitudeGenerator:
        """A generator over n features giving the first n of `values` (this generator's values
        over all features); seeded draws keep their parameters (see `variations`)."""
        return self


@MAGNITUDES.add
@dataclass
class ConstantMagnitude(MagnitudeGenerator):
    generator_name: ClassVar[str] = "constant"
    value: float = 1.0

    def __post_init__(self):
        number(self.value, "magnitude.value")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        return torch.full((n,), self.value, dtype=torch.float32)


class _Ramp(MagnitudeGenerator):
    """A ramp from `start` (feature 0) to `end` (the last feature); both positive."""
    start: float
    end: float

    def __post_init__(self):
        number(self.start, "magnitude.start")
        number(self.end, "magnitude.end")
        if self.start <= 0 or self.end <= 0:
            raise ConfigError(f"magnitude: {self.generator_name} start and end must be positive")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.start], dtype=torch.float32)
        return self._ramp(n)

    def prefix(self, values: torch.Tensor, n: int) -> MagnitudeGenerator:
        return type(self)(start=self.start, end=float(values[n - 1]))


@MAGNITUDES.add
@dataclass
class LinearMagnitude(_Ramp):
    """value_i = start + (end - start) * i / (n - 1)."""
    generator_name: ClassVar[str] = "linear"
    start: float
    end: float

    def _ramp(self, n: int) -> torch.Tensor:
        return torch.linspace(self.start, self.end, n)


@MAGNITUDES.add
@dataclass
class ExponentialMagnitude(_Ramp):
    """value_i = start * (end / start) ** (i / (n - 1))."""
    generator_name: ClassVar[str] = "exponential"
    start: float
    end: float

    def _ramp(self, n: int) -> torch.Tensor:
        return self.start * (self.end / self.start) ** torch.linspace(0, 1, n)


@MAGNITUDES.add
@dataclass
class FoldedNormalMagnitude(MagnitudeGenerator):
    """|N(mean, std^2)| per feature, optionally clamped to [min_value, max_value]."""
    generator_name: ClassVar[str] = "folded_normal"
    mean: float = 0.0
    std: float = 0.1
    min_value: float | None = None
    max_value: float | None = None

    def __post_init__(self):
        number(self.mean, "magnitude.mean")
        number(self.std, "magnitude.std")
        number(self.min_value, "magnitude.min_value", allow_none=True)
        number(self.max_value, "magnitude.max_value", allow_none=True)
        if self.std <= 0:
            raise ConfigError("magnitude: folded_normal std must be positive")
        if self.min_value is not None and self.min_value < 0:
            raise ConfigError("magnitude: folded_normal min_value must be non-negative")
        if self.max_value is not None and self.max_value <= 0:
            raise ConfigError("magnitude: folded_normal max_value must be positive")
        if (self.min_value is not None and self.max_value is not None
                and self.min_value > self.max_value):
            raise ConfigError("magnitude: folded_normal min_value must be <= max_value")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        x = (self.mean + torch.randn(n, generator=gen) * self.std).abs()
        if self.min_value is not None or self.max_value is not None:
            x = x.clamp(min=self.min_value, max=self.max_value)
        return x


Magnitude = float | ConstantMagnitude | LinearMagnitude | ExponentialMagnitude | FoldedNormalMagnitude


def magnitude_values(spec: Magnitude, n: int, seed: int | None) -> torch.Tensor:
    if isinstance(spec, (int, float)):
        return torch.full((n,), float(spec), dtype=torch.float32)
    return spec.generate(n, seed=seed)


def magnitude_prefix(spec: Magnitude, values: torch.Tensor, n: int) -> Magnitude:
    """The spec over n features whose values start like `values` (see MagnitudeGenerator.prefix)."""
    if isinstance(spec, (int, float)):
        return spec
    if not isinstance(spec, MagnitudeGenerator):
        raise ConfigError(f"cannot truncate magnitude generator {spec!r}")
    return spec.prefix(values, n)


def magnitude_from_json(value: Any, where: str) -> Magnitude:
    if isinstance(value, dict):
        return MAGNITUDES.parse(value, where)
    return float(number(value, where))


def magnitude_to_json(value: Magnitude) -> Any:
    return value.to_dict() if isinstance(value, Generator) else value
