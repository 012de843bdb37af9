"""L0 (active features per sample): streamed histograms and the analytic expectation.

`L0Accumulator` keeps count-per-L0 histograms of all features and of the first K features
(K = 4096 by default, as the SynthSAEBench paper reports both), from which mean, median and
p5/p95 follow exactly (percentiles use linear interpolation between order statistics, like
torch.quantile / numpy on the per-sample values). `expected_l0` is analytic (see
`synthviz.stats.analytic` for what it assumes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthviz.errors import ConfigError
from synthviz.stats.analytic import expected_l0, expected_rates

__all__ = ["L0Accumulator", "L0Stats", "expected_l0", "expected_rates", "hist_quantile"]


@dataclass
class L0Stats:
    hist: torch.Tensor  # [max L0 + 1] number of samples with each L0
    hist_first_k: torch.Tensor  # the same, counting only features < first_k
    mean: float
    median: float
    p5: float
    p95: float
    mean_first_k: float
    median_first_k: float
    p5_first_k: float
    p95_first_k: float
    samples: int
    first_k: int = 4096
    std: float = math.nan
    std_first_k: float = math.nan
    max: int = 0
    max_first_k: int = 0

    @property
    def se(self) -> float:
        """Standard error of `mean`."""
        return self.std / math.sqrt(self.samples) if self.samples > 1 else math.nan

    @property
    def se_first_k(self) -> float:
        return self.std_first_k / math.sqrt(self.samples) if self.samples > 1 else math.nan


def hist_quantile(hist: torch.Tensor, q: float) -> float:
    """q-quantile (0..1) of the values whose count-per-value histogram is `hist`, interpolated
    linearly between order statistics (torch.quantile's default)."""
    counts = hist.to(torch.int64)
    n = int(counts.sum())
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    cum = torch.cumsum(counts, 0)
    v_lo = int(torch.searchsorted(cum, torch.tensor([lo]), right=True)[0])
    v_hi = int(torch.searchsorted(cum, torch.tensor([hi]), right=True)[0])
    return v_lo + (pos - lo) * (v_hi - v_lo)


def _moments(hist: torch.Tensor) -> tuple[float, float]:
    n = float(hist.sum())
    if n == 0:
        return math.nan, math.nan
    x = torch.arange(hist.numel(), dtype=torch.float64)
    h = hist.double()
    mean = float((x * h).sum()) / n
    var = float(((x - mean) ** 2 * h).sum()) / (n - 1) if n > 1 else math.nan
    return mean, math.sqrt(var) if var == var else var


class L0Accumulator:
    """Streams per-sample L0 histograms (all features and the first `first_k`)."""

    def __init__(self, first_k: int = 4096):
        if isinstance(first_k, bool) or not isinstance(first_k, int) or first_k < 0:
            raise ConfigError(f"first_k must be a non-negative integer, got {first_k!r}")
        self.first_k = first_k
        self.hist = torch.zeros(1, dtype=torch.int64)
        self.hist_k = torch.zeros(1, dtype=torch.int64)
        self.samples = 0

    @staticmethod
    def _add(h: torch.Tensor, per: torch.Tensor) -> torch.Tensor:
        c = torch.bincount(per).cpu()
        if c.numel() > h.numel():
            h = torch.cat([h, torch.zeros(c.numel() - h.numel(), dtype=h.dtype)])
        h[:c.numel()] += c
        return h

    def update(self, rows, cols, values, batch_size: int) -> None:
        per = torch.bincount(rows, minlength=batch_size)
        per_k = torch.bincount(rows[cols < self.first_k], minlength=batch_size)
        self.hist = self._add(self.hist, per)
        self.hist_k = self._add(self.hist_k, per_k)
        self.samples += batch_size

    def result(self) -> L0Stats:
        h, hk = self.hist.clone(), self.hist_k.clone()
        mean, std = _moments(h)
        mean_k, std_k = _moments(hk)
        nz = lambda x: int(x.nonzero().max()) if x.any() else 0  # noqa: E731
        return L0Stats(
            hist=h, hist_first_k=hk, mean=mean, median=hist_quantile(h, 0.5),
            p5=hist_quantile(h, 0.05), p95=hist_quantile(h, 0.95), mean_first_k=mean_k,
            median_first_k=hist_quantile(hk, 0.5), p5_first_k=hist_quantile(hk, 0.05),
            p95_first_k=hist_quantile(hk, 0.95), samples=self.samples, first_k=self.first_k,
            std=std, std_first_k=std_k, max=nz(h), max_first_k=nz(hk))
