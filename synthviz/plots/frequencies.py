"""Firing-frequency rank plot: empirical against expected rates, log-log, with a sampling band."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import BASE, COMMON, CURRENT, EXPECTED, empty, to_numpy


def _rank_frame(stats) -> dict[str, np.ndarray]:
    """Columns in rank order: the statistic's own order (by expected rate when known, else by
    empirical rate)."""
    order = to_numpy(stats.order).astype(np.int64)
    return {"rank": np.arange(1, len(order) + 1), "feature": order,
            "expected": to_numpy(stats.expected_rate).astype(float)[order],
            "empirical": to_numpy(stats.empirical_rate).astype(float)[order],
            "stored_p": to_numpy(stats.stored_p).astype(float)[order],
            "count": to_numpy(stats.counts).astype(np.int64)[order]}


def create_frequency_plot(stats, base=None, band_sigma: float = 3.0) -> hv.Overlay:
    """Features ranked by expected rate: the expected curve, a +-sigma binomial band for the
    sample count, and each feature's empirical rate (features never seen are left out, since
    log(0) cannot be drawn). Before the expected rates are known the ranking is by empirical
    rate and only the points are drawn. base: `FiringStats` of the base model, in grey.
    """
    if stats is None or stats.samples == 0:
        return empty("no samples yet")
    f = _rank_frame(stats)
    n = float(stats.samples)
    known = bool(np.isfinite(f["expected"]).all())
    rank = hv.Dimension("rank", label="feature rank (by expected rate)" if known
                        else "feature rank (by empirical rate; expected rates computing…)")
    rate = hv.Dimension("rate", label="firing rate")
    seen = f["empirical"] > 0
    points = hv.Points(
        {"rank": f["rank"][seen], "rate": f["empirical"][seen], "feature": f["feature"][seen],
         "expected": f["expected"][seen], "stored_p": f["stored_p"][seen],
         "count": f["count"][seen]},
        [rank, rate], ["feature", "expected", "stored_p", "count"],
        label=f"empirical ({int(seen.sum()):,} of {len(seen):,} seen)",
    ).opts(color=CURRENT, size=3, alpha=0.6, tools=["hover"])
    layers = [points]
    # the mean empirical rate over log-spaced rank bins: single rare features are too noisy to
    # compare by eye (and never-seen ones cannot be drawn on a log axis), their average is not
    edges = np.unique(np.geomspace(1, len(f["rank"]) + 1, 60).astype(int))
    sums = np.add.reduceat(f["empirical"], edges[:-1] - 1)
    widths = np.diff(edges)
    binned = sums / widths
    centres = np.sqrt(edges[:-1] * (edges[1:] - 1).clip(min=1))
    ok = binned > 0
    binned_curve = hv.Curve((centres[ok], binned[ok]), rank, rate,
                            label="empirical, mean per rank bin").opts(
        color="#08306b", line_width=2, line_dash="dashed")
    layers.append(binned_curve)
    if known:
        floor = 0.2 / n  # below one count in the sample: the lower band edge stops there
        sd = np.sqrt(np.clip(f["expected"] * (1 - f["expected"]), 0, None) / n)
        lo = np.clip(f["expected"] - band_sigma * sd, floor, None)
        hi = np.clip(f["expected"] + band_sigma * sd, floor, None)
        layers = [hv.Area((f["rank"], lo, hi), rank, [rate, "rate_hi"],
                          label=f"±{band_sigma:g}σ for {int(n):,} samples").opts(
                      color=EXPECTED, alpha=0.12, line_alpha=0),
                  points,
                  hv.Curve((f["rank"], f["expected"]), rank, rate, label="expected").opts(
                      color=EXPECTED, line_width=2),
                  binned_curve]
    if base is not None and base.samples:
        b = _rank_frame(base)
        if np.isfinite(b["expected"]).all():
            layers.insert(0, hv.Curve((b["rank"], b["expected"]), rank, rate,
                                      label="base expected").opts(
                color=BASE, line_width=2, line_dash="dashed"))
    return hv.Overlay(layers).opts(
        logx=True, logy=True, title="Firing frequency by rank", legend_position="bottom_left",
        **COMMON)
