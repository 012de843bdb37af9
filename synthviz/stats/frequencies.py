"""Firing frequencies: each feature's empirical rate against its stored p and its expected rate.

The expected (effective) rate includes parent gating, ME and P(magnitude > 0); see
`synthviz.stats.analytic.expected_rates`. Rank-ordered arrays are ready for a log-log plot, and the
errors are given both absolutely and in binomial standard errors for the sample count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthviz.errors import ConfigError
from synthviz.stats.analytic import expected_rates  # noqa: F401  (part of this module's API)


@dataclass
class FiringStats:
    empirical_rate: torch.Tensor  # [N] fraction of samples where the feature is active
    stored_p: torch.Tensor  # [N] the model's stored (compensated) firing probability
    expected_rate: torch.Tensor  # [N] analytic effective rate
    counts: torch.Tensor  # [N] active counts
    samples: int
    error: torch.Tensor  # [N] empirical - expected
    z: torch.Tensor  # [N] error in binomial standard errors of the expected rate
    rel_error: torch.Tensor  # [N] error / expected (nan where expected is 0)
    max_abs_z: float
    mean_abs_error: float
    # rank order by expected rate (descending; ties by feature index), for log-log plots
    order: torch.Tensor  # [N] feature ids
    rank: torch.Tensor  # [N] 1..N
    ranked_expected: torch.Tensor
    ranked_empirical: torch.Tensor
    ranked_stored_p: torch.Tensor
    # rank order by empirical rate
    empirical_order: torch.Tensor
    ranked_by_empirical: torch.Tensor


def firing_stats(counts: torch.Tensor, samples: int, stored_p: torch.Tensor | None = None,
                 expected_rate: torch.Tensor | None = None) -> FiringStats:
    """FiringStats from active counts; stored_p / expected_rate default to NaN when unknown."""
    counts = counts.to(torch.int64).cpu()
    n = counts.numel()
    emp = counts.double() / max(samples, 1)
    nan = torch.full((n,), math.nan, dtype=torch.float64)
    sp = nan.clone() if stored_p is None else stored_p.detach().double().cpu()
    ex = nan.clone() if expected_rate is None else expected_rate.detach().double().cpu()
    err = emp - ex
    se = torch.sqrt((ex * (1 - ex)).clamp(min=0) / max(samples, 1))
    z = torch.where(se > 0, err / se.clamp(min=1e-300),
                    torch.where(err == 0, torch.zeros_like(err), torch.full_like(err, math.inf)))
    rel = torch.where(ex > 0, err / ex.clamp(min=1e-300), torch.full_like(err, math.nan))
    key = ex if expected_rate is not None else emp
    order = _desc_order(key)
    emp_order = _desc_order(emp)
    return FiringStats(
        empirical_rate=emp, stored_p=sp, expected_rate=ex, counts=counts, samples=samples,
        error=err, z=z, rel_error=rel,
        max_abs_z=float(z.abs().max()) if expected_rate is not None and n else math.nan,
        mean_abs_error=float(err.abs().mean()) if expected_rate is not None and n else math.nan,
        order=order, rank=torch.arange(1, n + 1), ranked_expected=ex[order],
        ranked_empirical=emp[order], ranked_stored_p=sp[order], empirical_order=emp_order,
        ranked_by_empirical=emp[emp_order])


def _desc_order(x: torch.Tensor) -> torch.Tensor:
    # stable, so equal rates keep feature order
    return torch.sort(torch.nan_to_num(x, nan=-1.0), descending=True, stable=True).indices


class FiringAccumulator:
    """Streams per-feature active counts.

    Pass the model (or let `collect` bind it) to get stored p and expected rates in the result;
    `FiringAccumulator(num_features)` alone gives NaN there until bound.
    """

    def __init__(self, num_features, model=None):
        if not isinstance(num_features, int):  # a model was passed
            model, num_features = num_features, num_features.num_features
        if isinstance(num_features, bool) or num_features < 1:
            raise ConfigError(f"num_features must be a positive integer, got {num_features!r}")
        self.num_features = num_features
        self.counts = torch.zeros(num_features, dtype=torch.int64)
        self.samples = 0
        self.stored_p = self.expected = None
        if model is not None:
            self.bind(model)

    def bind(self, model) -> None:
        if model.num_features != self.num_features:
            raise ConfigError(f"accumulator is for {self.num_features} features, the model has "
                              f"{model.num_features}")
        self.stored_p = model.firing_probabilities.detach().double().cpu()
        self.expected = expected_rates(model)

    def update(self, rows, cols, values, batch_size: int) -> None:
        self.counts += torch.bincount(cols, minlength=self.num_features).cpu()
        self.samples += batch_size

    def result(self) -> FiringStats:
        return firing_stats(self.counts.clone(), self.samples, self.stored_p, self.expected)
