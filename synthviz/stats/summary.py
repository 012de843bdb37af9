"""Headline numbers for `synthviz stats --json` and the app's cards, streamed over batches.

The foundation keys (num_features, hidden_dim, samples, l0_mean, l0_first_4096, rho_mm,
active_magnitude_std, me_violations, orphan_children) keep their names; the rest were added by the
statistics package.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from synthviz.stats.analytic import expected_rates
from synthviz.stats.frequencies import FiringAccumulator
from synthviz.stats.l0 import L0Accumulator
from synthviz.stats.magnitudes import MagnitudeAccumulator
from synthviz.stats.stream import collect
from synthviz.stats.interference import InterferenceAccumulator
from synthviz.stats.superposition import superposition_stats
from synthviz.stats.validity import ValidityAccumulator

BATCH = 4096
INTERFERENCE_SAMPLES = 1024


def rho_mm(vectors: torch.Tensor, progress: Callable[[int, int], None] | None = None) -> float:
    """Mean over features of the largest |cos| with any other feature (exact)."""
    return superposition_stats(vectors, percentiles=(), bins=1, progress=progress).rho_mm


def summarize(model, n_samples: int = 100_000, first_k: int = 4096, seed: int | None = 0,
              progress: Callable[[int, int], None] | None = None, *,
              superposition: bool = True, interference_samples: int = INTERFERENCE_SAMPLES) -> dict:
    """Sample `n_samples` (and measure the dictionary) and return the headline numbers.

    progress(done, total) counts samples first, then the superposition tiles.
    """
    n = model.num_features
    l0 = L0Accumulator(first_k=first_k)
    firing = FiringAccumulator(n)
    mags = MagnitudeAccumulator(model.forest)
    valid = ValidityAccumulator()
    accs = [l0, firing, mags, valid]
    inter_acc = None
    if interference_samples > 0:
        inter_acc = InterferenceAccumulator(model, max_samples=min(interference_samples, n_samples))
        accs.append(inter_acc)
    l0_4096 = None
    if first_k != 4096:
        l0_4096 = L0Accumulator(first_k=4096)
        accs.append(l0_4096)
    collect(model, n_samples, accs, seed=seed, batch_size=BATCH, progress=progress)
    l0s, fs, ms, vs = (a.result() for a in (l0, firing, mags, valid))
    inter = inter_acc.result() if inter_acc is not None else None
    if l0_4096 is not None:
        l0_4096 = l0_4096.result()
    rates = expected_rates(model)
    exp_l0, exp_k = float(rates.sum()), float(rates[:first_k].sum())
    out = {
        "num_features": n,
        "hidden_dim": model.hidden_dim,
        "samples": l0s.samples,
        "l0_mean": l0s.mean,
        f"l0_first_{first_k}": l0s.mean_first_k,
    }
    if first_k != 4096:  # the foundation key is always present
        out["l0_first_4096"] = l0_4096.mean_first_k
    sup = None
    if superposition:
        sup = superposition_stats(model.feature_vectors, bins=100, progress=progress)
    out.update({
        "rho_mm": sup.rho_mm if sup is not None else math.nan,
        "active_magnitude_std": ms.std,
        "me_violations": vs.me_violations,
        "orphan_children": vs.orphan_children,
        # added by the statistics package
        "first_k": first_k,
        "l0_se": l0s.se,
        "l0_median": l0s.median,
        "l0_p5": l0s.p5,
        "l0_p95": l0s.p95,
        f"l0_first_{first_k}_median": l0s.median_first_k,
        f"l0_first_{first_k}_p5": l0s.p5_first_k,
        f"l0_first_{first_k}_p95": l0s.p95_first_k,
        "expected_l0": exp_l0,
        f"expected_l0_first_{first_k}": exp_k,
        "expected_l0_rel_error": exp_l0 / l0s.mean - 1 if l0s.mean else math.nan,
        "firing_rate_max_abs_z": fs.max_abs_z,
        "firing_rate_mean_abs_error": fs.mean_abs_error,
        "features_never_active": int((fs.counts == 0).sum()),
        "active_magnitude_mean": ms.mean,
    })
    for d in sorted(ms.std_by_depth):
        if d >= 0:
            out[f"active_magnitude_std_depth_{d}"] = ms.std_by_depth[d]
    if sup is not None:
        out["mean_abs_cos"] = sup.mean_abs_cos
        for p, v in sup.mean_percentile.items():
            out[f"mean_p{p}_abs_cos"] = v
        out["max_abs_cos"] = float(sup.max_abs_cos.max())
    if inter is not None:
        out.update({"interference_samples": inter.samples, "interference_std_active": inter.active_std,
                    "interference_std_inactive": inter.inactive_std, "sir": inter.sir,
                    "sir_db": inter.sir_db})
    f = model.forest
    if f is not None:
        from synthviz.stats.hierarchy_stats import forest_summary
        s = forest_summary(f, n)
        out.update({"hierarchy_roots": s.roots, "hierarchy_nodes": s.in_trees,
                    "hierarchy_max_depth": s.max_depth, "me_parents": s.me_parents,
                    "features_outside_trees": s.outside})
    else:
        out.update({"hierarchy_roots": 0, "hierarchy_nodes": 0, "hierarchy_max_depth": -1,
                    "me_parents": 0, "features_outside_trees": n})
    return _plain(out)


def _plain(d: dict) -> dict:
    """JSON-friendly: NaN and inf become None."""
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[k] = v
    return out
