"""Exact activation rates of independent features down a forest: the one analytic estimator.

A feature is active when it fires, its magnitude relu(mu + sigma * N(0, 1)) is positive
(`positive_magnitude`), its parent is active, and it wins its ME group. For independent features
the rates follow exactly down the forest: rate(child) = rate(parent) * cand(child) * win(child),
where cand is P(fires and magnitude > 0) and win = E[1 / (1 + K)], K the number of its ME siblings
that are also candidates (`me_win_probability`). `chain_rates` does that recursion on a
`ForestIndex`; `independent_rates` applies it to every feature. The statistics
(`synthviz.stats.analytic.expected_rates`) average `chain_rates` over the copula's shared factor;
the L0 solver (`synthviz.l0_target`) uses `independent_rates` directly (correlation ignored).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from synthviz.forest_index import ForestIndex

_SQRT2 = math.sqrt(2.0)


@lru_cache(maxsize=64)
def gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1] (float64; shared, do not modify in place)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy(x), torch.from_numpy(w)


def positive_magnitude(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """P(relu(mean + std * N(0, 1)) > 0) per feature (std 0: 1 if mean > 0 else 0); the noise
    is symmetric, so a negative std acts as its absolute value (as in sae_lens)."""
    mean, std = mean.double(), std.double().abs()
    z = torch.where(std > 0, mean / std.clamp(min=1e-300),
                    torch.where(mean > 0, torch.full_like(mean, math.inf),
                                torch.full_like(mean, -math.inf)))
    return 0.5 * torch.erfc(-z / _SQRT2)


def me_win_probability(pi: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """For groups [..., G, K] of independent candidates (probabilities pi, padding valid=False):
    P(a candidate is the one kept | it is a candidate) = E[1 / (1 + others)], exactly.

    E[1 / (1 + X)] = integral over t in [0, 1] of E[t^X] = prod over the others of
    (1 - pi_s (1 - t)): a polynomial of degree < K, integrated exactly by Gauss-Legendre. The
    product over the others is the group's product divided by the candidate's own factor, which
    is >= t > 0 at the (interior) nodes.
    """
    k = pi.shape[-1]
    if pi.numel() == 0:
        return pi.clone()
    pi = torch.where(valid, pi, torch.zeros((), dtype=pi.dtype, device=pi.device)).contiguous()
    x, w = gauss_legendre(max(1, (k + 1) // 2))  # exact for the degree k - 1 polynomial
    x, w = x.to(pi.device, pi.dtype), w.to(pi.device, pi.dtype)
    t = (x + 1) / 2  # nodes on [0, 1]
    fac = (pi.unsqueeze(-1) * (t - 1)).add_(1)  # [..., G, K, nodes]; one large temporary
    allp = fac.prod(dim=-2, keepdim=True)
    others = torch.div(allp, fac, out=fac)
    return others @ (w / 2)


def chain_rates(cand: torch.Tensor, ix: ForestIndex) -> torch.Tensor:
    """Rates [n_tree, M] of tree nodes (level order, `ix.nodes`) from their candidate
    probabilities [n_tree, M] (fires and has a positive magnitude; M points of the copula
    factor, or 1); exact when nodes are independent. Features are rows so gathers copy rows."""
    win = torch.ones_like(cand)
    for sib, valid, targets in ix.rate_buckets:
        # [G, K, M] -> [M, G, K] for the quadrature, then back to rows
        wp = me_win_probability(cand[sib].permute(2, 0, 1), valid)
        win[targets] = wp.permute(1, 2, 0)[valid]
    rate = torch.empty_like(cand)
    a, b = ix.slices[0]
    rate[a:b] = cand[a:b] * win[a:b]  # top-level ME groups (organizational parents)
    for a, b in ix.slices[1:]:
        torch.mul(rate[ix.local_parent[a:b]], cand[a:b], out=rate[a:b]).mul_(win[a:b])
    return rate


def independent_rates(cand: torch.Tensor, forest) -> torch.Tensor:
    """Expected activation rate [N] of every feature from its candidate probability [N]
    (P(fires and magnitude > 0)), features independent; exact under independence."""
    rate = cand.clone()
    if forest is None or not forest.levels:
        return rate
    ix = forest.index
    rate[ix.nodes] = chain_rates(cand[ix.nodes].unsqueeze(1), ix)[:, 0]
    return rate


def candidate_probabilities(p: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """P(fires and magnitude > 0) per feature (float64, CPU), p clamped to [0, 1]."""
    return p.detach().double().cpu().clamp(0.0, 1.0) * positive_magnitude(
        mean.detach().cpu(), std.detach().cpu())
