"""L0 targeting: solve the firing-probability generator for a target L0 (and first-K L0).

The generators synthviz solves are affine in two parameters for a fixed shape:
``p_i = lo + (hi - lo) * t_i`` with ``t_i`` in [0, 1] (Zipfian: the normalized rank term for an
exponent; linear: a ramp; random: the seeded uniforms). So the result is always a plain
`firing_probability` config (truthful on export).

1. A fast analytic estimate of the expected L0 (`estimate_rates`): features fire with their stored
   (compensated) probability and a positive magnitude; a child needs an active parent; in an ME
   group a child survives with probability E[1 / (1 + number of other active siblings)],
   computed exactly for independent siblings by Gauss-Legendre integration of the siblings'
   generating function. The copula correlation is ignored.
2. Newton's method on (lo, hi) against that estimate, for the model's Zipfian exponent first and,
   when the targets are out of reach there, for nearby exponents.
3. A check by sampling: the estimate is corrected by the measured/estimated ratio and re-solved
   until the measured L0s are within `tolerance` (or the rounds run out). The achieved values are
   reported in `model.provenance.l0_target`.

Solutions are cached on disk, keyed by everything that determines them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from synthviz.config import (ConstantProbability, LinearProbability, RandomProbability,
                             ZipfianProbability)
from synthviz.errors import ConfigError, Progress
from synthviz.hierarchy import Forest
from synthviz.model import SynthModel, compensated_probabilities

log = logging.getLogger(__name__)
SOLVE_CACHE_VERSION = 1
DEFAULT_SAMPLES = 8192
DEFAULT_TOLERANCE = 0.015
EXPONENT_FACTORS = (1.0, 0.8, 1.25, 0.64, 1.5625, 0.5, 2.0, 0.35, 3.0, 0.25, 4.0, 0.15, 6.0, 0.1)


# ---------------------------------------------------------------------------- the estimate

@contextmanager
def _one_thread():
    """Run many small tensor ops on one thread: on a busy machine the thread pool's hand-offs
    cost far more than the ops themselves (measured 6 ms vs 430 ms per 16k estimate)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Structure:
    """Flat arrays of a forest for vectorized compensation and rate estimates."""
    n: int
    parent: torch.Tensor | None  # [N] long, -1 for none
    group: torch.Tensor | None  # [N] long: ME group of the feature, -1 for none
    group_parent: torch.Tensor | None  # [G] long: the group's parent feature, -1 for none
    # per depth: (features, parents) (None at depth 0), then the ME groups whose members are at
    # that depth (sib [G, K], valid) or None
    levels: list
    max_group: int

    @classmethod
    def of(cls, forest: Forest | None, n: int) -> _Structure:
        if forest is None:
            return cls(n, None, None, None, [], 0)
        parent = forest.parent.clone()
        groups = forest.me_groups()
        depth = forest.depth
        at: dict[int, list[list[int]]] = {}
        for q, kids in groups:  # members sit one below their parent (top level: depth 0)
            at.setdefault(int(depth[q]) + 1 if q >= 0 else 0, []).append(kids)
        levels = []
        max_group = 0
        for d, nodes in enumerate(forest.levels):
            kids = torch.tensor(nodes, dtype=torch.long) if d > 0 else None
            me = None
            if d in at:
                gs = at[d]
                k = max(len(g) for g in gs)
                max_group = max(max_group, k)
                sib = torch.zeros(len(gs), k, dtype=torch.long)
                valid = torch.zeros(len(gs), k, dtype=torch.bool)
                for i, g in enumerate(gs):
                    sib[i, :len(g)] = torch.tensor(g)
                    valid[i, :len(g)] = True
                me = (sib, valid)
            levels.append((kids, None if kids is None else parent[kids], me))
        return cls(n, parent, forest.group_of.clone(), forest.group_parent.clone(), levels,
                   max_group)

    def compensate(self, base_p: torch.Tensor) -> torch.Tensor:
        """sae_lens's compensation rule, vectorized (float64); not clamped."""
        if self.parent is None:
            return base_p.clone()
        has = self.parent >= 0
        corr = torch.ones_like(base_p)
        pp = torch.ones_like(base_p)
        pp[has] = base_p[self.parent[has]]
        ok = has & (pp > 0)
        corr[ok] = 1.0 / pp[ok]
        me = self.group >= 0
        if me.any():
            g = self.group[me]
            gp = self.group_parent[g]
            # an organizational group at the top level sees probability 1
            node_p = torch.where(gp >= 0, base_p[gp.clamp(min=0)], torch.ones_like(base_p[me]))
            sums = torch.zeros(len(self.group_parent), dtype=base_p.dtype).index_add_(
                0, g, base_p[me])
            others = (sums[g] - base_p[me]).clamp(min=0)
            corr[me] = torch.where(node_p > 0, corr[me] * (1.0 + others / node_p.clamp(
                min=1e-300)), corr[me])
        return base_p * corr


_GL_CACHE: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def _gauss_legendre(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    if m not in _GL_CACHE:
        x, w = np.polynomial.legendre.leggauss(m)
        _GL_CACHE[m] = (torch.tensor((x + 1) / 2), torch.tensor(w / 2))
    return _GL_CACHE[m]


def _rates(q: torch.Tensor, st: _Structure) -> torch.Tensor:
    """Expected activation rate per feature given q_i = P(fires with a positive magnitude)."""
    a = q.clone()
    if st.parent is None:
        return a
    m = max(8, st.max_group // 2 + 2)  # exact for the degree-(K-1) generating polynomial
    t, w = _gauss_legendre(m)
    for kids, pars, me in st.levels:
        if kids is not None:
            a[kids] = a[pars] * q[kids]
        if me is not None:
            sib, valid = me
            qs = torch.where(valid, q[sib], torch.zeros((), dtype=q.dtype))
            logs = torch.log1p(-qs.unsqueeze(2) * (1 - t))  # [G, K, m]; q = 1 gives log t
            total = logs.sum(1, keepdim=True)
            survive = (torch.exp(total - logs) * w).sum(2)  # E[1 / (1 + other active siblings)]
            flat = sib[valid]
            a[flat] = a[flat] * survive[valid]
    return a


def _positive_magnitude(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """P(relu(mean + std * N(0, 1)) > 0) per feature (a negative std acts as |std|)."""
    mean, std = mean.double(), std.double().abs()
    z = torch.where(std > 0, mean / std.clamp(min=1e-300),
                    torch.where(mean > 0, torch.tensor(math.inf, dtype=torch.float64),
                                torch.tensor(-math.inf, dtype=torch.float64)))
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def estimate_rates(model: SynthModel) -> torch.Tensor:
    """Analytic expected activation rate of every feature [N] (float64), correlation ignored.

    The solver's fast estimate; `synthviz.stats.expected_rates` is the correlation-aware one.
    """
    with _one_thread():
        st = _Structure.of(model.forest, model.num_features)
        q = model.firing_probabilities.double().cpu() * _positive_magnitude(
            model.mean_magnitudes.cpu(), model.std_magnitudes.cpu())
        return _rates(q, st)


def estimate_l0(model: SynthModel, first_k: int = 4096) -> tuple[float, float]:
    """(expected L0, expected L0 over features < first_k) from `estimate_rates`."""
    r = estimate_rates(model)
    return float(r.sum()), float(r[:first_k].sum())


# ---------------------------------------------------------------------------- measuring

def measure_l0(model: SynthModel, samples: int, first_k: int = 4096, seed: int = 0,
               batch: int = 4096, progress: Progress | None = None) -> dict:
    """Sampled mean L0 and first-K L0 with their standard errors."""
    if samples < 2:
        raise ConfigError(f"need at least 2 samples to measure L0, got {samples}")
    with _one_thread():  # the sampler's ops are small; see _one_thread
        return _measure(model, samples, first_k, seed, batch, progress)


def _measure(model, samples, first_k, seed, batch, progress) -> dict:
    gen = torch.Generator(device=model.device).manual_seed(seed)
    s = sk = s2 = sk2 = 0.0
    done = 0
    while done < samples:
        b = min(batch, samples - done)
        _, rows, cols, _ = model.sample_entries(b, generator=gen)
        per = torch.bincount(rows, minlength=b).double()
        perk = torch.bincount(rows[cols < first_k], minlength=b).double()
        s += float(per.sum())
        s2 += float((per * per).sum())
        sk += float(perk.sum())
        sk2 += float((perk * perk).sum())
        done += b
        if progress is not None:
            progress(done, samples)

    def se(total, sq):
        mean = total / done
        return math.sqrt(max(sq / done - mean * mean, 0.0) / (done - 1))

    return {"l0": s / done, "l0_first_k": sk / done, "l0_se": se(s, s2),
            "l0_first_k_se": se(sk, sk2), "first_k": first_k, "samples": done, "seed": seed}


# ---------------------------------------------------------------------------- the solver

@dataclass
class _Problem:
    """Everything the analytic estimate needs, for candidate (lo, hi) of one generator family."""
    kind: str  # zipfian | linear | random | constant
    n: int
    first_k: int
    st: _Structure
    pos: torch.Tensor  # P(positive magnitude) [N]
    compensate: bool
    random_u: torch.Tensor | None = None

    def shape(self, exponent: float | None) -> torch.Tensor:
        n = self.n
        if self.kind == "zipfian":
            raw = torch.arange(1, n + 1, dtype=torch.float64) ** (-exponent)
            return (raw - raw.min()) / (raw.max() - raw.min()) if n > 1 else torch.ones(1)
        if self.kind == "linear":
            return torch.linspace(1.0, 0.0, n, dtype=torch.float64) if n > 1 else torch.ones(1)
        if self.kind == "random":
            return self.random_u
        return torch.ones(n, dtype=torch.float64)

    def estimate(self, lo: float, hi: float, t: torch.Tensor) -> tuple[float, float]:
        base = lo + (hi - lo) * t
        p = (self.st.compensate(base) if self.compensate else base).clamp(max=1.0)
        r = _rates(p * self.pos, self.st)
        return float(r.sum()), float(r[:self.first_k].sum())


def _newton(prob: _Problem, t: torch.Tensor, target: tuple[float, float], strict: bool,
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


def _problem_for(model: SynthModel, first_k: int) -> tuple[_Problem, object]:
    cfg = model.cfg
    gen = cfg.firing_probability
    kind = {ZipfianProbability: "zipfian", LinearProbability: "linear",
            RandomProbability: "random", ConstantProbability: "constant"}.get(type(gen))
    if kind is None:
        raise ConfigError(f"L0 targeting cannot solve a {type(gen).__name__} generator")
    u = None
    if kind == "random":
        g = torch.Generator().manual_seed(cfg.sub_seed(0)) if cfg.seed is not None else None
        u = torch.rand(model.num_features, generator=g, dtype=torch.float32).double()
    prob = _Problem(kind=kind, n=model.num_features, first_k=first_k,
                    st=_Structure.of(model.forest, model.num_features),
                    pos=_positive_magnitude(model.mean_magnitudes, model.std_magnitudes),
                    compensate=bool(cfg.hierarchy and cfg.hierarchy.compensate_probabilities
                                    and model.forest is not None),
                    random_u=u)
    return prob, gen


def _make_generator(kind: str, lo: float, hi: float, exponent: float | None):
    if kind == "zipfian":
        return ZipfianProbability(exponent=exponent, max_prob=hi, min_prob=lo)
    if kind == "linear":
        return LinearProbability(max_prob=hi, min_prob=lo)
    if kind == "random":
        return RandomProbability(max_prob=hi, min_prob=lo)
    return ConstantProbability(probability=hi)


def _gen_params(gen) -> tuple[float, float, float | None]:
    if isinstance(gen, ConstantProbability):
        return gen.probability, gen.probability, None
    return gen.min_prob, gen.max_prob, getattr(gen, "exponent", None)


def _solve_analytic(prob: _Problem, gen, target_l0: float, target_k: float | None
                    ) -> tuple[float, float, float | None]:
    """(lo, hi, exponent) whose estimate hits the targets; ConfigError naming the range if none."""
    lo0, hi0, a0 = _gen_params(gen)
    strict = prob.kind in ("zipfian", "random")
    if target_k is None:
        # keep the shape, scale it; if that saturates at max_prob = 1, raise min_prob towards 1
        t = prob.shape(a0)
        top = 1.0 / hi0
        f = lambda s: prob.estimate(lo0 * s, hi0 * s, t)[0]  # noqa: E731
        if f(top) >= target_l0:
            s = _bisect(f, 0.0, top, target_l0)
            return lo0 * s, hi0 * s, a0
        if prob.kind == "constant":
            raise ConfigError(f"target L0 {target_l0:g} is unreachable: L0 can range from 0 "
                              f"to about {f(top):.4g} for this model")
        cap = 1.0 - 1e-6 if strict else 1.0
        g = lambda lo: prob.estimate(lo, 1.0, t)[0]  # noqa: E731
        if g(cap) < target_l0:
            raise ConfigError(f"target L0 {target_l0:g} is unreachable: L0 can range from 0 "
                              f"to about {g(cap):.4g} for this model")
        return _bisect(g, lo0 * top, cap, target_l0), 1.0, a0
    if prob.kind == "constant":
        raise ConfigError("a first-K L0 target needs a zipfian, linear or random firing "
                          "probability generator, not a constant one")
    target = (target_l0, target_k)
    # the model's own exponent first: the common case, and the config stays closest to the source
    sol = _newton(prob, prob.shape(a0), target, strict, _linear_start(prob, a0, target, lo0, hi0))
    if sol is not None:
        return sol[0], sol[1], a0
    exponents = [a0 * f for f in EXPONENT_FACTORS[1:]] if prob.kind == "zipfian" else []
    ranges = [_reachable_first_k(prob, target_l0, a0, strict)]
    for a in exponents:
        lo_k, hi_k = _reachable_first_k(prob, target_l0, a, strict)
        ranges.append((lo_k, hi_k))
        if lo_k is not None and lo_k <= target_k <= hi_k:
            sol = _newton(prob, prob.shape(a), target, strict,
                          _linear_start(prob, a, target, lo0, hi0))
            if sol is not None:
                return sol[0], sol[1], a
    found = [r for r in ranges if r[0] is not None]
    if not found:
        raise ConfigError(f"target L0 {target_l0:g} is unreachable for this model")
    raise ConfigError(
        f"target first-{prob.first_k} L0 {target_k:g} is unreachable with L0 {target_l0:g}: "
        f"the first-{prob.first_k} L0 can range from about {min(r[0] for r in found):.4g} to "
        f"{max(r[1] for r in found):.4g} ({prob.kind} firing probabilities)")


def _linear_start(prob: _Problem, a, target, lo0: float, hi0: float) -> tuple[float, float]:
    """(lo, hi) from the hierarchy-free estimate L0 = sum of p, a linear 2 x 2 system."""
    t = prob.shape(a)
    s_all, s_k = float(t.sum()), float(t[:prob.first_k].sum())
    k = min(prob.first_k, prob.n)
    try:
        lo, hi = np.linalg.solve(np.array([[prob.n - s_all, s_all], [k - s_k, s_k]]), target)
    except np.linalg.LinAlgError:
        return lo0, hi0
    return (lo, hi) if 0 < lo < hi <= 1 else (lo0, hi0)


def _reachable_first_k(prob: _Problem, target_l0: float, a, strict: bool):
    """Approximate (min, max) first-K L0 at the given L0 for one shape: the first-K L0 along
    L0 = target is extreme on the edges of 0 < lo <= hi <= 1 (lo -> 0, hi = 1, lo = hi)."""
    found = []
    eps = 1e-6
    t = prob.shape(a)
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


def _digest(model: SynthModel) -> str:
    """What the solution depends on besides the targets: config, forest, magnitudes, copula."""
    h = hashlib.sha256()
    cfg = model.cfg.to_dict()
    h.update(json.dumps(cfg, sort_keys=True).encode())
    tensors = [model.mean_magnitudes, model.std_magnitudes]
    if model.forest is not None:
        f = model.forest
        tensors += [f.parent, f.me_mask, f.rescale_mask]
        if f.org is not None:  # organizational nodes: the groups and scaled children too
            tensors += [f.group_of, f.group_parent, f.child_rescale_mask]
    if model.correlation_factor is not None:
        tensors += [model.correlation_factor, model.correlation_diag]
    for x in tensors:
        h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def with_generator(model: SynthModel, gen) -> SynthModel:
    """`model` with firing probabilities from `gen`, compensated and clamped as the base's."""
    cfg = model.cfg.replace(firing_probability=gen)
    base_p = gen.generate(cfg.num_features, seed=cfg.sub_seed(0))
    p, clamped = compensated_probabilities(
        base_p, model.forest, bool(cfg.hierarchy and cfg.hierarchy.compensate_probabilities))
    new = model.replace(cfg=cfg, firing_probabilities=p.to(model.firing_probabilities.dtype))
    new.provenance = new.provenance.derived(probabilities_clamped=clamped)
    return new


def solve_l0(model: SynthModel, target_l0: float, target_first_k: float | None = None,
             first_k: int = 4096, *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
             tolerance: float = DEFAULT_TOLERANCE, rounds: int = 4, use_cache: bool = True,
             progress: Progress | None = None) -> SynthModel:
    """`model` with firing probabilities solved for the target L0 (and first-K L0).

    Raises ConfigError naming the target and the reachable range when a target is out of reach.
    `model.provenance.l0_target` holds the targets, the generator and the measured L0s.
    """
    if target_l0 <= 0 or (target_first_k is not None and target_first_k <= 0):
        raise ConfigError("L0 targets must be positive")
    if target_first_k is not None and target_first_k > target_l0:
        raise ConfigError(f"target first-{first_k} L0 ({target_first_k:g}) cannot exceed the "
                          f"target L0 ({target_l0:g})")
    if target_l0 > model.num_features:
        raise ConfigError(f"target L0 {target_l0:g} is unreachable: the model has only "
                          f"{model.num_features} features")
    from synthviz.cache import model_cache_dir

    from synthviz.sampling import SAMPLER_VERSION
    key = {"l0_solve": SOLVE_CACHE_VERSION, "sampler": SAMPLER_VERSION,
           "model": _digest(model), "target_l0": target_l0,
           "target_first_k": target_first_k, "first_k": first_k, "samples": samples,
           "seed": seed, "tolerance": tolerance, "rounds": rounds}
    cache_file = model_cache_dir(key) / "l0_solution.json"
    if use_cache and cache_file.is_file():
        try:
            saved = json.loads(cache_file.read_text())
            from synthviz.config import FIRING_PROBABILITIES
            gen = FIRING_PROBABILITIES.parse(saved["generator"], "cached l0 solution")
            new = with_generator(model, gen)
            new.provenance = new.provenance.replace(l0_target=saved["report"])
            return new
        except (OSError, ValueError, KeyError, ConfigError) as exc:
            log.warning("ignoring a damaged L0 solution cache %s: %s", cache_file, exc)

    with _one_thread():
        prob, gen0 = _problem_for(model, first_k)
    want = (target_l0, target_first_k)
    aim = list(want)  # analytic targets, corrected by what sampling measures
    best = None
    for rnd in range(max(1, rounds)):
        with _one_thread():
            lo, hi, a = _solve_analytic(prob, gen0, aim[0], aim[1])
            est = prob.estimate(lo, hi, prob.shape(a))
        try:
            gen = _make_generator(prob.kind, lo, hi, a)
        except ConfigError as exc:
            raise ConfigError(f"target L0 {target_l0:g} needs firing probabilities outside "
                              f"(0, 1]: {exc}") from None
        cand = with_generator(model, gen)
        m = measure_l0(cand, samples, first_k=first_k, seed=seed)
        got = (m["l0"], m["l0_first_k"] if target_first_k is not None else None)
        err = max(abs(g / w - 1) for g, w in zip(got, want) if w is not None)
        if best is None or err < best[0]:
            best = (err, cand, gen, m, est, rnd + 1)
        if progress is not None:
            progress(rnd + 1, rounds)
        if err <= tolerance:
            break
        # the estimate misses by a smooth factor: aim where the measurement says we should
        aim = [w * (e / g) if w is not None else None for w, e, g in zip(want, est, got)]
    err, cand, gen, m, est, used = best
    report = {
        "target_l0": target_l0, "target_first_k": target_first_k, "first_k": first_k,
        "achieved_l0": m["l0"], "achieved_l0_se": m["l0_se"],
        "achieved_first_k": m["l0_first_k"], "achieved_first_k_se": m["l0_first_k_se"],
        "estimated_l0": est[0], "estimated_first_k": est[1], "samples": m["samples"],
        "seed": seed, "rounds": used, "relative_error": err, "generator": gen.to_dict(),
    }
    if err > tolerance:
        log.warning("L0 targeting: best relative error %.3f after %d rounds", err, used)
    cand.provenance = cand.provenance.replace(l0_target=report)
    if use_cache:
        from synthviz.cache import write_cache_json
        try:
            write_cache_json(cache_file, {"generator": gen.to_dict(), "report": report})
        except OSError as exc:
            log.warning("could not cache the L0 solution at %s: %s", cache_file, exc)
    return cand
