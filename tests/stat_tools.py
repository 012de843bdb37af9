"""Tolerances for statistical tests, derived from the sample size."""

from __future__ import annotations

import math

import torch


def two_sample_rate_z(k1: torch.Tensor, n1: int, k2: torch.Tensor, n2: int) -> torch.Tensor:
    """z-scores of the difference of two binomial rates per feature (pooled variance)."""
    k1, k2 = k1.double(), k2.double()
    p = (k1 + k2) / (n1 + n2)
    se = torch.sqrt(p * (1 - p) * (1 / n1 + 1 / n2)).clamp(min=1e-12)
    return (k1 / n1 - k2 / n2) / se


def bonferroni_z(m: int, alpha: float = 1e-3) -> float:
    """Two-sided z bound so that m independent tests all pass with probability >= 1 - alpha."""
    q = alpha / (2 * max(m, 1))
    # inverse normal tail by bisection (no scipy dependency)
    lo, hi = 0.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > q:
            lo = mid
        else:
            hi = mid
    return hi


def mean_se(x: torch.Tensor) -> float:
    return float(x.double().std() / math.sqrt(x.numel()))
