"""The analytic half of L0 targeting: a firing-probability generator's range for target L0s.

A firing-probability generator is affine in its value range for a fixed shape (see
`synthviz.generators.probability`): ``p_i = lo + (hi - lo) * t_i``. For a model's structure and
magnitudes, `L0Problem.estimate(lo, hi, t)` is the analytic expected L0 (and first-K L0) of
the compensated, clamped probabilities (`synthviz.rate_maths.independent_rates`, correlation
ignored). `solve_analytic` finds (lo, hi) hitting the targets: bisection for one target; Newton's
method on (lo, hi) for two, for the generator's own shape first and then, when the targets are out
of reach there, for its `shape_variants` (Zipfian: nearby exponents). `synthviz.l0_target` checks
the result by sampling and corrects it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from synthviz.errors import ConfigError
from synthviz.generators import ProbabilityGenerator
from synthviz.hierarchy import Forest
from synthviz.rate_maths import independent_rates

EXPONENT_FACTORS = (1.0, 0.8, 1.25, 0.64, 1.5625, 0.5, 2.0, 0.35, 3.0, 0.25, 4.0, 0.15, 6.0, 0.1)


@dataclass
class L0Problem:
    """Everything the analytic estimate needs, for candidate (lo, hi) of one generator family."""
    gen: ProbabilityGenerator  # the model's generator: its family, shape and range
    n: int
    first_k: int
    forest: Forest | None
    pos: torch.Tensor  # P(positive magnitude) [N]
    compensate: bool
    seed: int | None  # the probability seed (random generators' shape)
    _shapes: dict = field(default_factory=dict, repr=False)

    def shape(self, gen: ProbabilityGenerator) -> torch.Tensor:
        """`gen`'s unit shape over the model's features (computed once per shape)."""
        key = repr(gen)
        if key not in self._shapes:
            self._shapes[key] = gen.unit_shape(self.n, self.seed)
        return self._shapes[key]

    def estimate(self, lo: float, hi: float, t: torch.Tensor) -> tuple[float, float]:
        base = lo + (hi - lo) * t
        p = (self.forest.index.compensate(base) if self.compensate else base).clamp(max=1.0)
        r = independent_rates(p * self.pos, self.forest)
        return float(r.sum()), float(r[:self.first_k].sum())


def _newton(prob: L0Problem, t: torch.Tensor, target: tuple[float, float], strict: bool,
            start: tuple[float, float]) -> tuple[float, float] | None:
    """(lo, hi) with estimate == target, 0 < lo < hi <= 1, or None if out of reach."""
    tgt = np.array(target)

    def feasible(lo, hi):
        return 0 < lo and hi <= 1 and (lo < hi if strict else lo <= hi)

    def resid(x):
        return (np.array(prob.estimate(x[0], x[1], t)) - tgt) / tgt

    x = np.array(start, dtype=float)
    x[1] = min(max(x[1], 1e-9), 1.0)
    x[0] = min(max(x[0], 1e-12), x[1] * (1 - 1e-6))
    r = resid(x)
    for _ in range(40):
        if np.abs(r).max() < 1e-5:
            return float(x[0]), float(x[1])
        jac = np.empty((2, 2))
        for j in range(2):
            h = max(abs(x[j]) * 1e-5, 1e-12)
            xp = x.copy()
            xp[j] += h if (j == 0 or x[1] + h <= 1) else -h
            jac[:, j] = (resid(xp) - r) / (xp[j] - x[j])
        try:
            step = -np.linalg.solve(jac, r)
        except np.linalg.LinAlgError:
            return None
        lam, moved = 1.0, False
        for _ in range(25):
            xn = x + lam * step
            if feasible(*xn):
                rn = resid(xn)
                if np.abs(rn).max() < np.abs(r).max():
                    x, r, moved = xn, rn, True
                    break
            lam /= 2
        if not moved:
            return None
    return (float(x[0]), float(x[1])) if np.abs(r).max() < 1e-3 else None


def _bisect(f, lo: float, hi: float, target: float, iters: int = 60) -> float:
    """x in [lo, hi] with f(x) == target for increasing f (assumes a bracket)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def solve_analytic(prob: L0Problem, target_l0: float, target_k: float | None
                   ) -> tuple[float, float, ProbabilityGenerator]:
    """(lo, hi, shape) whose estimate hits the targets, `shape` the generator whose shape it
    uses (its range is not yet (lo, hi)); ConfigError naming the reachable range if none."""
    gen = prob.gen
    lo0, hi0 = gen.value_range
    strict = gen.strict_range
    if target_k is None:
        # keep the shape, scale it; if that saturates at max_prob = 1, raise min_prob towards 1
        t = prob.shape(gen)
        top = 1.0 / hi0
        f = lambda s: prob.estimate(lo0 * s, hi0 * s, t)[0]  # noqa: E731
        if f(top) >= target_l0:
            s = _bisect(f, 0.0, top, target_l0)
            return lo0 * s, hi0 * s, gen
        if gen.range_parameters < 2:
            raise ConfigError(f"target L0 {target_l0:g} is unreachable: L0 can range from 0 "
                              f"to about {f(top):.4g} for this model")
        cap = 1.0 - 1e-6 if strict else 1.0
        g = lambda lo: prob.estimate(lo, 1.0, t)[0]  # noqa: E731
        if g(cap) < target_l0:
            raise ConfigError(f"target L0 {target_l0:g} is unreachable: L0 can range from 0 "
                              f"to about {g(cap):.4g} for this model")
        return _bisect(g, lo0 * top, cap, target_l0), 1.0, gen
    if gen.range_parameters < 2:
        raise ConfigError("a first-K L0 target needs a zipfian, linear or random firing "
                          f"probability generator, not a {gen.generator_name} one")
    target = (target_l0, target_k)
    # the model's own shape first: the common case, and the config stays closest to the source
    sol = _newton(prob, prob.shape(gen), target, strict, _linear_start(prob, gen, target))
    if sol is not None:
        return sol[0], sol[1], gen
    ranges = [_reachable_first_k(prob, target_l0, gen)]
    for alt in gen.shape_variants(EXPONENT_FACTORS[1:]):
        lo_k, hi_k = _reachable_first_k(prob, target_l0, alt)
        ranges.append((lo_k, hi_k))
        if lo_k is not None and lo_k <= target_k <= hi_k:
            sol = _newton(prob, prob.shape(alt), target, strict, _linear_start(prob, alt, target))
            if sol is not None:
                return sol[0], sol[1], alt
    found = [r for r in ranges if r[0] is not None]
    if not found:
        raise ConfigError(f"target L0 {target_l0:g} is unreachable for this model")
    raise ConfigError(
        f"target first-{prob.first_k} L0 {target_k:g} is unreachable with L0 {target_l0:g}: "
        f"the first-{prob.first_k} L0 can range from about {min(r[0] for r in found):.4g} to "
        f"{max(r[1] for r in found):.4g} ({gen.generator_name} firing probabilities)")


def _linear_start(prob: L0Problem, shape: ProbabilityGenerator, target) -> tuple[float, float]:
    """(lo, hi) from the hierarchy-free estimate L0 = sum of p, a linear 2 x 2 system."""
    t = prob.shape(shape)
    s_all, s_k = float(t.sum()), float(t[:prob.first_k].sum())
    k = min(prob.first_k, prob.n)
    lo0, hi0 = prob.gen.value_range
    try:
        lo, hi = np.linalg.solve(np.array([[prob.n - s_all, s_all], [k - s_k, s_k]]), target)
    except np.linalg.LinAlgError:
        return lo0, hi0
    return (lo, hi) if 0 < lo < hi <= 1 else (lo0, hi0)


def _reachable_first_k(prob: L0Problem, target_l0: float, shape: ProbabilityGenerator):
    """Approximate (min, max) first-K L0 at the given L0 for one shape: the first-K L0 along
    L0 = target is extreme on the edges of 0 < lo <= hi <= 1 (lo -> 0, hi = 1, lo = hi)."""
    found = []
    eps = 1e-6
    strict = prob.gen.strict_range
    t = prob.shape(shape)
    edges = [lambda x: (x * eps, x), lambda x: (x * (1 - eps), 1.0),
             lambda x: (x * (1 - eps) if strict else x, x)]
    for edge in edges:
        f = lambda x, e=edge: prob.estimate(*e(x), t)[0]  # noqa: E731
        if f(eps) <= target_l0 <= f(1.0):
            x = _bisect(f, eps, 1.0, target_l0, iters=30)
            found.append(prob.estimate(*edge(x), t)[1])
    if not found:
        return None, None
    return min(found), max(found)
