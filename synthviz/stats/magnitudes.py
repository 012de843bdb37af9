"""Magnitudes of active features: histograms overall and by hierarchy depth.

With `scale_children_by_parent`, a child's value is multiplied by parent_value / mu_parent, so the
spread of magnitudes grows with depth; the per-depth histograms, moments, and the histograms of
value / mu_i (1 at the feature's own mean) show that effect. Histogram ranges are fixed before
sampling (from the model when bound: the 99th percentile over features of mu + 4 sigma, times the
parents' matching bound / mu along the rescaling chain), so streamed and one-batch results match;
values above the range are counted in `overflow`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthviz.errors import ConfigError

DEFAULT_MAX = 16.0
REL_MAX = 4.0


@dataclass
class MagnitudeStats:
    edges: torch.Tensor  # [bins + 1] over [0, max_value]
    counts: torch.Tensor  # [bins] active values, all features
    by_depth: dict  # {depth: counts [bins]}; depth -1 = features outside any tree
    mean: float
    std: float
    active: int  # number of active values seen
    overflow: int  # values above max_value (not in any bin)
    max_seen: float
    mean_by_depth: dict  # {depth: mean}
    std_by_depth: dict  # {depth: std}
    count_by_depth: dict  # {depth: number of active values}
    rel_edges: torch.Tensor  # [bins + 1] over [0, REL_MAX] of value / mu_i
    rel_counts: torch.Tensor
    rel_by_depth: dict
    rel_std_by_depth: dict  # {depth: std of value / mu_i}
    samples: int


class MagnitudeAccumulator:
    def __init__(self, forest=None, bins: int = 100, max_value: float | None = None):
        if bins < 1:
            raise ConfigError(f"bins must be >= 1, got {bins}")
        self.forest = forest
        self.bins = bins
        self.max_value = max_value
        self.mean_mag = None
        self._depth = None
        self.samples = 0
        self._state = None

    def bind(self, model) -> None:
        if self.forest is None:
            self.forest = model.forest
        self.mean_mag = model.mean_magnitudes.detach().double().cpu()
        if self.max_value is None:
            self.max_value = _range_from_model(model)

    def _setup(self, n: int):
        if self.max_value is None:
            self.max_value = DEFAULT_MAX
        depth = self.forest.depth if self.forest is not None else torch.full((n,), -1)
        levels = sorted(set(depth.tolist()))
        self._depth = depth
        self._levels = levels
        nd = len(levels)
        self._slot = torch.full((int(depth.max()) + 2,), 0, dtype=torch.long)
        for i, d in enumerate(levels):
            self._slot[d + 1] = i
        self._state = {
            "hist": torch.zeros(nd, self.bins, dtype=torch.int64),
            "rel": torch.zeros(nd, self.bins, dtype=torch.int64),
            "m": torch.zeros(nd, 5, dtype=torch.float64),  # count, sum, sumsq, rel sum, rel sumsq
            "overflow": 0, "max": 0.0,
        }

    def update(self, rows, cols, values, batch_size: int) -> None:
        if self._state is None:
            self._setup(int(cols.max()) + 1 if cols.numel() and self.forest is None else
                        (self.forest.num_features if self.forest is not None else 1))
        self.samples += batch_size
        if values.numel() == 0:
            return
        st = self._state
        c = cols.cpu()
        v = values.detach().cpu().double()
        if self.forest is None and int(c.max()) >= self._depth.numel():
            self._depth = torch.full((int(c.max()) + 1,), -1)
        slot = self._slot[self._depth[c] + 1]
        nd = len(self._levels)
        hi = float(self.max_value)
        b = (v * (self.bins / hi)).floor().long()
        over = b >= self.bins
        st["overflow"] += int(over.sum())
        st["max"] = max(st["max"], float(v.max()))
        ok = ~over
        st["hist"] += torch.bincount(slot[ok] * self.bins + b[ok].clamp(min=0),
                                     minlength=nd * self.bins).view(nd, self.bins)
        mu = self.mean_mag[c] if self.mean_mag is not None else torch.ones_like(v)
        rel = torch.where(mu > 0, v / mu.clamp(min=1e-300), torch.zeros_like(v))
        rb = (rel * (self.bins / REL_MAX)).floor().long()
        rok = rb < self.bins
        st["rel"] += torch.bincount(slot[rok] * self.bins + rb[rok].clamp(min=0),
                                    minlength=nd * self.bins).view(nd, self.bins)
        m = torch.stack([torch.ones_like(v), v, v * v, rel, rel * rel], 1)
        st["m"].index_add_(0, slot, m)

    def result(self) -> MagnitudeStats:
        if self._state is None:
            self._setup(self.forest.num_features if self.forest is not None else 1)
        st = self._state
        lv = self._levels
        m = st["m"]

        def mstd(cnt, s, s2):
            if cnt < 1:
                return math.nan, math.nan
            mean = s / cnt
            var = max(s2 / cnt - mean * mean, 0.0) * cnt / (cnt - 1) if cnt > 1 else math.nan
            return mean, math.sqrt(var) if var == var else var

        tot = m.sum(0).tolist()
        mean, std = mstd(tot[0], tot[1], tot[2])
        by = {d: st["hist"][i].clone() for i, d in enumerate(lv)}
        mb, sb, cb, rsb = {}, {}, {}, {}
        for i, d in enumerate(lv):
            row = m[i].tolist()
            mb[d], sb[d] = mstd(row[0], row[1], row[2])
            rsb[d] = mstd(row[0], row[3], row[4])[1]
            cb[d] = int(row[0])
        return MagnitudeStats(
            edges=torch.linspace(0, float(self.max_value), self.bins + 1),
            counts=st["hist"].sum(0), by_depth=by, mean=mean, std=std, active=int(tot[0]),
            overflow=st["overflow"], max_seen=st["max"], mean_by_depth=mb, std_by_depth=sb,
            count_by_depth=cb, rel_edges=torch.linspace(0, REL_MAX, self.bins + 1),
            rel_counts=st["rel"].sum(0), rel_by_depth={d: st["rel"][i].clone() for i, d in enumerate(lv)},
            rel_std_by_depth=rsb, samples=self.samples)


def _range_from_model(model) -> float:
    """99th percentile over features of a per-feature bound mu + 4 sigma, carried down rescaling
    parents (child bound times parent bound / mu_parent)."""
    mu = model.mean_magnitudes.detach().double().cpu()
    sd = model.std_magnitudes.detach().double().cpu().abs()  # the noise is symmetric
    hi = (mu + 4 * sd).clamp(min=0)
    f = model.forest
    if f is not None:
        resc = f.child_rescale_mask
        for c, q in f.index.parent_levels:
            scale = torch.where(resc[c] & (mu[q] > 0), hi[q] / mu[q].clamp(min=1e-300),
                                torch.ones_like(hi[q]))
            hi[c] = hi[c] * scale
    top = float(torch.quantile(hi.float(), 0.99)) if hi.numel() > 1 else float(hi.max())
    top = max(top, 1e-6)
    # a round number so edges read well
    mag = 10 ** math.floor(math.log10(top))
    return math.ceil(top / mag * 2) / 2 * mag
