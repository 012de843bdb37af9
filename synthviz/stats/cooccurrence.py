"""Co-occurrence of a chosen feature set: joint firing counts, lift, phi and NPMI.

Counts are kept (K x K, the diagonal holding each feature's own count), so pairs too rare to trust
are flagged in `noise` rather than hidden. This makes three facts of the generative process visible:
ME siblings never co-fire (count exactly 0), a child never fires without its parent (its joint
count with the parent equals its own count), and the low-rank copula tilts pairs with a large
|F_i . F_j| (`implied_phi` gives the phi it implies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthviz.errors import ConfigError
from synthviz.stats.analytic import expected_rates, implied_phi

__all__ = ["MAX_FEATURES", "CooccurrenceAccumulator", "CooccurrenceStats", "cooccurrence_stats",
           "implied_phi", "select_features"]

MAX_FEATURES = 2048  # a K x K dense matrix per batch stays cheap below this


@dataclass
class CooccurrenceStats:
    features: torch.Tensor  # [K] feature ids
    counts: torch.Tensor  # [K, K] joint active counts; diagonal = each feature's count
    rates: torch.Tensor  # [K] P(i)
    joint: torch.Tensor  # [K, K] P(i and j)
    lift: torch.Tensor  # [K, K] P(ij) / (P(i) P(j)); nan when a feature never fired
    phi: torch.Tensor  # [K, K] phi coefficient of the two activity indicators
    npmi: torch.Tensor  # [K, K] log(lift) / -log P(ij); -1 for pairs that never co-fire
    samples: int
    noise: torch.Tensor  # [K, K] bool: observed and independence-expected joint counts both small
    expected_counts: torch.Tensor  # [K, K] n P(i) P(j)
    min_count: int = 10


def select_features(model, how: str = "top", k: int | None = None, root: int | None = None,
                    ids=None, rates: torch.Tensor | None = None) -> torch.Tensor:
    """The feature ids for a co-occurrence matrix.

    how="top": the k most frequent features (by `rates`, default the analytic expected rates).
    how="subtree": `root` and its descendants in breadth-first order (the first k when k is set).
    how="list": the explicit `ids` (validated, order kept).
    """
    n = model.num_features
    if how == "top":
        k = 32 if k is None else k
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        r = expected_rates(model) if rates is None else rates.detach().double().cpu()
        order = torch.sort(r, descending=True, stable=True).indices
        return order[:min(k, n)].clone()
    if how == "subtree":
        forest = model.forest
        if forest is None:
            raise ConfigError("this model has no hierarchy, so there is no subtree to select")
        if root is None:
            raise ConfigError("how='subtree' needs root=<feature id>")
        root = int(root)
        if not 0 <= root < n:
            raise ConfigError(f"root {root} out of range for {n} features")
        if int(forest.depth[root]) < 0:
            raise ConfigError(f"feature {root} is not in any hierarchy tree")
        out, frontier = [], [root]
        while frontier and (k is None or len(out) < k):
            out.extend(frontier)
            frontier = [c for f in frontier for c in forest.children.get(f, [])]
        return torch.tensor(out if k is None else out[:k], dtype=torch.long)
    if how == "list":
        if ids is None:
            raise ConfigError("how='list' needs ids=[feature ids]")
        t = torch.as_tensor(list(ids) if not isinstance(ids, torch.Tensor) else ids,
                            dtype=torch.long).flatten()
        if t.numel() == 0:
            raise ConfigError("the feature list is empty")
        bad = t[(t < 0) | (t >= n)]
        if bad.numel():
            raise ConfigError(f"feature ids out of range for {n} features: {bad[:5].tolist()}")
        if torch.unique(t).numel() != t.numel():
            raise ConfigError("the feature list has duplicates")
        return t.clone()
    raise ConfigError(f"how must be 'top', 'subtree' or 'list', got {how!r}")


class CooccurrenceAccumulator:
    """Streams the K x K joint active counts of `features`."""

    def __init__(self, features, min_count: int = 10):
        f = torch.as_tensor(features, dtype=torch.long).flatten().cpu()
        if f.numel() == 0:
            raise ConfigError("co-occurrence needs at least one feature")
        if f.numel() > MAX_FEATURES:
            raise ConfigError(f"co-occurrence of {f.numel()} features is too many; at most "
                              f"{MAX_FEATURES}")
        if int(f.min()) < 0:
            raise ConfigError("feature ids must be >= 0")
        if torch.unique(f).numel() != f.numel():
            raise ConfigError("co-occurrence features have duplicates")
        self.features = f
        self.k = f.numel()
        self.min_count = min_count
        self._lut = torch.full((int(f.max()) + 1,), -1, dtype=torch.long)
        self._lut[f] = torch.arange(self.k)
        self._luts: dict = {}
        self.counts = torch.zeros(self.k, self.k, dtype=torch.int64)
        self.samples = 0

    def update(self, rows, cols, values, batch_size: int) -> None:
        dev = cols.device
        lut = self._luts.get(dev)
        if lut is None:
            lut = self._luts[dev] = self._lut.to(dev)
        inside = cols < lut.numel()
        r, c = rows[inside], cols[inside]
        local = lut[c]
        keep = local >= 0
        r, local = r[keep], local[keep]
        if r.numel():
            # only rows with a selected feature matter: compact them before the K x K product
            ur, rr = torch.unique(r, return_inverse=True)
            x = torch.zeros(ur.numel(), self.k, dtype=torch.float32, device=dev)
            x[rr, local] = 1.0
            # float32 sums of 0/1 are exact below 2^24 rows per batch
            self.counts += (x.T @ x).round().to(torch.int64).cpu()
        self.samples += batch_size

    def result(self) -> CooccurrenceStats:
        return cooccurrence_stats(self.features, self.counts.clone(), self.samples, self.min_count)


def cooccurrence_stats(features: torch.Tensor, counts: torch.Tensor, samples: int,
                       min_count: int = 10) -> CooccurrenceStats:
    """Lift, phi and NPMI from joint counts (diagonal = own counts) over `samples` samples."""
    n = max(samples, 1)
    c = counts.double()
    own = torch.diagonal(c).clone()
    pi = own / n
    joint = c / n
    outer = pi[:, None] * pi[None, :]
    nan = torch.tensor(math.nan, dtype=torch.float64)
    lift = torch.where(outer > 0, joint / outer.clamp(min=1e-300), nan)
    var = own * (n - own)
    den = torch.sqrt(var[:, None] * var[None, :])
    phi = torch.where(den > 0, (n * c - own[:, None] * own[None, :]) / den.clamp(min=1e-300), nan)
    with torch.no_grad():
        pmi = torch.log(lift)
        npmi = torch.where(joint <= 0, torch.full_like(joint, -1.0),
                           torch.where(joint >= 1, torch.where(lift > 0, torch.zeros_like(joint), nan),
                                       pmi / -torch.log(joint.clamp(min=1e-300))))
        npmi = torch.where(outer > 0, npmi, nan)
    expected = outer * n
    noise = (expected < min_count) & (c < min_count)
    return CooccurrenceStats(features=features.clone(), counts=counts, rates=pi, joint=joint,
                             lift=lift, phi=phi, npmi=npmi, samples=samples, noise=noise,
                             expected_counts=expected, min_count=min_count)
