"""Firing-probability generators (sae_lens's `firing_probability` configs) and their behaviour.

Every generator here is affine in a value range for a fixed shape: ``p_i = lo + (hi - lo) * t_i``
with ``t_i`` in [0, 1] (Zipfian: the normalized rank term for its exponent; linear: a ramp;
random: the seeded uniforms; constant: lo = hi). That is what lets a generator scale itself, give
the generator of a prefix of its values, and be solved for a target L0 (`synthviz.l0_target`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from synthviz.config_fields import number
from synthviz.errors import ConfigError
from synthviz.generators.base import Generator, GeneratorRegistry

FIRING_PROBABILITIES = GeneratorRegistry("firing probability generator")


class ProbabilityGenerator(Generator):
    """A firing-probability generator with a value range (min_prob, max_prob) and a shape."""
    strict_range: ClassVar[bool] = True  # needs min_prob < max_prob (else <=)
    range_parameters: ClassVar[int] = 2  # free values in the range (a constant has one)

    @property
    def value_range(self) -> tuple[float, float]:
        return self.min_prob, self.max_prob

    def with_range(self, lo: float, hi: float) -> ProbabilityGenerator:
        """This shape over [lo, hi] (ConfigError when the range is invalid)."""
        return dataclasses.replace(self, min_prob=lo, max_prob=hi)

    def unit_shape(self, n: int, seed: int | None) -> torch.Tensor:
        """t in [0, 1] (float64) with generate(n) = lo + (hi - lo) * t, up to float32 rounding."""
        raise NotImplementedError

    def shape_variants(self, factors: tuple[float, ...]) -> list[ProbabilityGenerator]:
        """Generators of other shapes (same range) the L0 solver may try, nearest first."""
        return []

    def scaled(self, k: float) -> tuple[ProbabilityGenerator, bool]:
        """(generator whose values are k times these, True), or (self, False) when none is."""
        try:
            return self.with_range(self.min_prob * k, self.max_prob * k), True
        except ConfigError:  # k * max_prob > 1: no generator says "scaled then clamped"
            return self, False

    def prefix(self, base_p: torch.Tensor, n: int) -> ProbabilityGenerator:
        """A generator over n features whose values are the first n of `base_p` (this generator's
        values over all features), to rounding."""
        return self


def _check_prob_range(lo: Any, hi: Any, strict: bool) -> None:
    number(lo, "firing_probability.min_prob")
    number(hi, "firing_probability.max_prob")
    ok = (0 < lo < hi <= 1) if strict else (0 < lo <= hi <= 1)
    if not ok:
        rel = "<" if strict else "<="
        raise ConfigError(f"firing_probability: need 0 < min_prob {rel} max_prob <= 1, "
                          f"got min_prob={lo}, max_prob={hi}")


@FIRING_PROBABILITIES.add
@dataclass
class ZipfianProbability(ProbabilityGenerator):
    """p proportional to rank^-exponent, rescaled so feature 0 has max_prob and the last min_prob."""
    generator_name: ClassVar[str] = "zipfian"
    exponent: float = 1.0
    max_prob: float = 0.3
    min_prob: float = 0.01

    def __post_init__(self):
        number(self.exponent, "firing_probability.exponent")
        if self.exponent <= 0:
            raise ConfigError("firing_probability.exponent must be positive")
        _check_prob_range(self.min_prob, self.max_prob, strict=True)

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.max_prob])
        ranks = torch.arange(1, n + 1, dtype=torch.float32)
        raw = 1.0 / ranks**self.exponent
        lo, hi = raw.min(), raw.max()
        return self.min_prob + (self.max_prob - self.min_prob) * (raw - lo) / (hi - lo)

    def unit_shape(self, n: int, seed: int | None) -> torch.Tensor:
        if n == 1:
            return torch.ones(1)
        raw = torch.arange(1, n + 1, dtype=torch.float64) ** (-self.exponent)
        return (raw - raw.min()) / (raw.max() - raw.min())

    def shape_variants(self, factors: tuple[float, ...]) -> list[ProbabilityGenerator]:
        return [dataclasses.replace(self, exponent=self.exponent * f) for f in factors]

    def prefix(self, base_p: torch.Tensor, n: int) -> ProbabilityGenerator:
        if n == base_p.numel():
            return self
        last = float(base_p[n - 1])
        if n == 1 or not last < self.max_prob:
            return ConstantProbability(probability=self.max_prob)
        return ZipfianProbability(exponent=self.exponent, max_prob=self.max_prob, min_prob=last)


@FIRING_PROBABILITIES.add
@dataclass
class LinearProbability(ProbabilityGenerator):
    """Linear ramp from max_prob (feature 0) to min_prob (last feature)."""
    generator_name: ClassVar[str] = "linear"
    strict_range: ClassVar[bool] = False
    max_prob: float = 0.3
    min_prob: float = 0.01

    def __post_init__(self):
        _check_prob_range(self.min_prob, self.max_prob, strict=False)

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.max_prob])
        return torch.linspace(self.max_prob, self.min_prob, n)

    def unit_shape(self, n: int, seed: int | None) -> torch.Tensor:
        return torch.linspace(1.0, 0.0, n, dtype=torch.float64) if n > 1 else torch.ones(1)

    def prefix(self, base_p: torch.Tensor, n: int) -> ProbabilityGenerator:
        if n == base_p.numel():
            return self
        # float32 rounding may put the last value just above max_prob (n = 1, or a flat ramp)
        return LinearProbability(max_prob=self.max_prob,
                                 min_prob=min(float(base_p[n - 1]), self.max_prob))


@FIRING_PROBABILITIES.add
@dataclass
class RandomProbability(ProbabilityGenerator):
    """Uniform in [min_prob, max_prob], drawn from the probability seed. torch.rand is
    prefix-consistent, so the prefix of its values is the same generator over fewer features."""
    generator_name: ClassVar[str] = "random"
    max_prob: float = 0.5
    min_prob: float = 0.01

    def __post_init__(self):
        _check_prob_range(self.min_prob, self.max_prob, strict=True)

    def _uniforms(self, n: int, seed: int | None) -> torch.Tensor:
        gen = torch.Generator()
        if seed is not None:
            gen.manual_seed(seed)
        return torch.rand(n, generator=gen, dtype=torch.float32)

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        return self.min_prob + (self.max_prob - self.min_prob) * self._uniforms(n, seed)

    def unit_shape(self, n: int, seed: int | None) -> torch.Tensor:
        return self._uniforms(n, seed).double()


@FIRING_PROBABILITIES.add
@dataclass
class ConstantProbability(ProbabilityGenerator):
    """The same probability for every feature."""
    generator_name: ClassVar[str] = "constant"
    strict_range: ClassVar[bool] = False
    range_parameters: ClassVar[int] = 1
    probability: float = 0.1

    def __post_init__(self):
        # sae_lens checks nothing here; a value outside [0, 1] is refused at build unless the
        # hierarchy compensation clamps it back (see model.check_probabilities)
        number(self.probability, "firing_probability.probability")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        return torch.full((n,), self.probability, dtype=torch.float32)

    @property
    def value_range(self) -> tuple[float, float]:
        return self.probability, self.probability

    def with_range(self, lo: float, hi: float) -> ProbabilityGenerator:
        return ConstantProbability(probability=hi)

    def unit_shape(self, n: int, seed: int | None) -> torch.Tensor:
        return torch.ones(n, dtype=torch.float64)

    def scaled(self, k: float) -> tuple[ProbabilityGenerator, bool]:
        # a clamped constant is still a constant
        return ConstantProbability(probability=min(1.0, self.probability * k)), True
