"""Analytic firing rates and copula co-firing, computed from a model's tensors without sampling.

What is exact and what is approximated (used by `expected_rates`, `expected_l0`, `implied_phi`):

- A feature is active when its copula variable passes its threshold (probability = its stored p),
  its magnitude relu(mu + sigma * N(0, 1)) is positive (probability Phi(mu / sigma), independent),
  its parent is active, and it wins its ME group (if its parent's children are ME).
- Features without a parent: rate = p * Phi(mu / sigma). Exact.
- A child c of parent q: rate(c) = rate(q) * P(c fires | q fires) * Phi(mu_c / sigma_c) * win(c),
  where P(c fires | q fires) = P(z_c > t_c, z_q > t_q) / p_q is the exact bivariate normal orthant
  probability for the copula correlation rho_cq = F_c . F_q (Drezner's arcsin form, Gauss-Legendre).
- win(c) = E[1 / (1 + K)] with K the number of c's siblings that are also candidates (fired with a
  positive magnitude), the siblings taken as independent given the parent fires, each a candidate
  with probability pi_s = P(s fires | q fires) Phi(mu_s / sigma_s). It is computed exactly for that
  model as the integral over t in [0, 1] of prod_{s != c} (1 - pi_s (1 - t)) (the siblings'
  probability generating function; Gauss-Legendre with enough nodes is exact for a polynomial).

Approximations: the copula correlation is kept only between a child and its own parent. What is left
out: sibling-sibling correlation inside an ME group, correlation with grandparents, and the slight
dependence of "parent won its own ME group" on the child's copula variable. Without a correlation
factor every step above is exact, so the rates are exact. With the base model's rank-25, scale-0.1
factor the expected L0 is within about 0.5% of sampling (tests/stats/test_l0.py measures it for
the base and one model of every variation family and asserts 3%).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from synthviz.errors import ConfigError

_SQRT2 = math.sqrt(2.0)
_T_CLAMP = 38.0  # |threshold| beyond which a normal tail is 0 in float64
_BVN_NODES = 24


def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy(x), torch.from_numpy(w)


def normal_sf(x: torch.Tensor) -> torch.Tensor:
    """P(Z > x) for a standard normal Z."""
    return 0.5 * torch.erfc(x / _SQRT2)


def thresholds(p: torch.Tensor) -> torch.Tensor:
    """Copula thresholds t = Phi^-1(1 - p) in float64, clamped to +-38 for p in {0, 1}."""
    p = p.double().clamp(0.0, 1.0)
    t = _SQRT2 * torch.erfinv(1 - 2 * p)
    return torch.nan_to_num(t, nan=0.0, posinf=_T_CLAMP, neginf=-_T_CLAMP).clamp(-_T_CLAMP, _T_CLAMP)


def bvn_upper(h: torch.Tensor, k: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """P(X > h, Y > k) for standard normals X, Y with correlation rho (elementwise, float64).

    Uses P = Phi(-h) Phi(-k) + 1/(2 pi) * integral over theta in [0, asin rho] of
    exp(-(h^2 + k^2 - 2 h k sin theta) / (2 cos^2 theta)): smooth in theta for |rho| < 1, so
    24-node Gauss-Legendre is accurate to ~1e-15 for |rho| <= 0.99.
    """
    h, k, rho = torch.broadcast_tensors(h.double(), k.double(), rho.double())
    h = h.clamp(-_T_CLAMP, _T_CLAMP)
    k = k.clamp(-_T_CLAMP, _T_CLAMP)
    rho = rho.clamp(-1 + 1e-12, 1 - 1e-12)
    x, w = _gauss_legendre(_BVN_NODES)
    x, w = x.to(h.device), w.to(h.device)
    top = torch.asin(rho)
    theta = (top.unsqueeze(-1) * (x + 1) / 2)  # [..., nodes]
    s, c2 = torch.sin(theta), torch.cos(theta) ** 2
    hh, kk = h.unsqueeze(-1), k.unsqueeze(-1)
    f = torch.exp(-(hh * hh + kk * kk - 2 * hh * kk * s) / (2 * c2))
    integral = (f * w).sum(-1) * top / 2
    out = normal_sf(h) * normal_sf(k) + integral / (2 * math.pi)
    return out.clamp(min=0.0)


def positive_magnitude(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """P(relu(mean + std * N(0, 1)) > 0) per feature (std 0: 1 if mean > 0 else 0)."""
    mean, std = mean.double(), std.double()
    z = torch.where(std > 0, mean / std.clamp(min=1e-300),
                    torch.where(mean > 0, torch.full_like(mean, math.inf),
                                torch.full_like(mean, -math.inf)))
    return 0.5 * torch.erfc(-z / _SQRT2)


def _rho(model, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    f = model.correlation_factor
    if f is None:
        return torch.zeros(i.shape, dtype=torch.float64)
    f = f.double().cpu()
    return (f[i] * f[j]).sum(-1)


def _conditional_fire(model, p, t, child: torch.Tensor, par: torch.Tensor) -> torch.Tensor:
    """P(child's copula variable passes | parent's passes), exact for the bivariate pair."""
    if model.correlation_factor is None:
        return p[child]
    joint = bvn_upper(t[child], t[par], _rho(model, child, par))
    pp = p[par]
    cond = torch.where(pp > 0, joint / pp.clamp(min=1e-300), p[child])
    return cond.clamp(0.0, 1.0)


def me_win_probability(pi: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """For groups [G, K] of independent candidates (probabilities pi, padding valid=False):
    P(a candidate is the one kept | it is a candidate) = E[1 / (1 + others)], exactly."""
    g, k = pi.shape
    if g == 0:
        return pi.clone()
    pi = torch.where(valid, pi.double(), torch.zeros((), dtype=torch.float64))
    x, w = _gauss_legendre(max(1, (k + 1) // 2 + 1))
    t = (x + 1) / 2  # nodes on [0, 1]
    w = w / 2
    fac = 1 - pi.unsqueeze(-1) * (1 - t)  # [G, K, M]
    ones = torch.ones(g, 1, t.numel(), dtype=torch.float64)
    before = torch.cumprod(torch.cat([ones, fac[:, :-1]], 1), 1)
    after = torch.flip(torch.cumprod(torch.flip(torch.cat([fac[:, 1:], ones], 1), [1]), 1), [1])
    return ((before * after) * w).sum(-1)


def _me_tables(forest):
    cache = forest.__dict__.setdefault("_synthviz_stats_me", {})
    if "levels" not in cache:
        levels = []
        for nodes in forest.levels:
            groups = [(q, forest.children[q]) for q in nodes
                      if q in forest.me and len(forest.children.get(q, [])) >= 2]
            if not groups:
                levels.append(None)
                continue
            k = max(len(c) for _, c in groups)
            sib = torch.zeros(len(groups), k, dtype=torch.long)
            valid = torch.zeros(len(groups), k, dtype=torch.bool)
            for gi, (_, kids) in enumerate(groups):
                sib[gi, :len(kids)] = torch.tensor(kids)
                valid[gi, :len(kids)] = True
            levels.append((sib, valid))
        cache["levels"] = levels
    return cache["levels"]


@torch.no_grad()
def expected_rates(model) -> torch.Tensor:
    """Expected activation rate of every feature [N] (float64, CPU); see the module docstring."""
    p = model.firing_probabilities.detach().double().cpu().clamp(0.0, 1.0)
    a = positive_magnitude(model.mean_magnitudes.detach().cpu(), model.std_magnitudes.detach().cpu())
    forest = model.forest
    if forest is None:
        return p * a
    t = thresholds(p)
    parent = forest.parent
    rate = torch.zeros_like(p)
    top = parent < 0
    rate[top] = p[top] * a[top]
    cand = torch.zeros_like(p)  # P(candidate | parent fires)
    has_par = ~top
    if has_par.any():
        child = has_par.nonzero().squeeze(1)
        cand[child] = _conditional_fire(model, p, t, child, parent[child]) * a[child]
    win = torch.ones_like(p)
    for lv in _me_tables(forest):
        if lv is None:
            continue
        sib, valid = lv
        wp = me_win_probability(cand[sib], valid)
        win[sib[valid]] = wp[valid]
    for nodes in forest.levels[1:]:
        f = torch.tensor(nodes, dtype=torch.long)
        rate[f] = rate[parent[f]] * cand[f] * win[f]
    return rate


@torch.no_grad()
def expected_l0(model, first_k: int = 4096) -> tuple[float, float]:
    """(expected L0, expected L0 over features < first_k), from `expected_rates`."""
    if first_k < 0:
        raise ConfigError(f"first_k must be >= 0, got {first_k}")
    r = expected_rates(model)
    return float(r.sum()), float(r[:first_k].sum())


@torch.no_grad()
def implied_phi(model, i, j, *, magnitudes: bool = True):
    """Phi coefficient of the activity of features i and j implied by the Gaussian copula.

    rho_ij = F_i . F_j; both fire with the bivariate normal orthant probability at thresholds
    Phi^-1(1 - p). With `magnitudes`, each firing is thinned by P(magnitude > 0) (independent).
    Exact for features without a parent; for children it leaves out the hierarchy's gating and ME.
    Accepts ints (returns a float) or index tensors (returns a float64 tensor).
    """
    scalar = isinstance(i, int) and isinstance(j, int)
    n = model.num_features
    i = torch.as_tensor(i, dtype=torch.long).cpu()
    j = torch.as_tensor(j, dtype=torch.long).cpu()
    for x in (i, j):
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= n):
            raise ConfigError(f"feature index out of range for {n} features")
    p = model.firing_probabilities.detach().double().cpu().clamp(0.0, 1.0)
    t = thresholds(p)
    rho = torch.where(i == j, torch.ones((), dtype=torch.float64), _rho(model, i, j))
    joint = bvn_upper(t[i], t[j], rho)
    pi, pj = p[i], p[j]
    if magnitudes:
        a = positive_magnitude(model.mean_magnitudes.detach().cpu(),
                               model.std_magnitudes.detach().cpu())
        joint = joint * a[i] * a[j]
        pi, pj = pi * a[i], pj * a[j]
    den = torch.sqrt(pi * (1 - pi) * pj * (1 - pj))
    phi = torch.where(den > 0, (joint - pi * pj) / den.clamp(min=1e-300),
                      torch.full_like(den, math.nan))
    phi = torch.where((i == j) & (den > 0), torch.ones_like(phi), phi)
    return float(phi) if scalar else phi
