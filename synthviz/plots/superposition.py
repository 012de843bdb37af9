"""Superposition: the pairwise |cos| histogram, max |cos| against firing probability, and the
interference-noise histograms measured on samples."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import ACCENT, BASE, COMMON, CURRENT, EXPECTED, empty, marker_line, to_numpy


def create_cos_histogram(stats, base=None) -> hv.Overlay:
    """Histogram of |cos| over all feature pairs (log count axis), rho_mm marked.

    stats, base: `SuperpositionStats`.
    """
    if stats is None:
        return empty("superposition not computed yet")
    edges = to_numpy(stats.hist_edges).astype(float)
    counts = to_numpy(stats.hist_counts).astype(float)
    # log axis: empty bins are drawn at 0.5 so bars keep a bottom instead of vanishing
    floor = 0.5
    kd = hv.Dimension("abs_cos", label="|cos| between two features")
    vd = hv.Dimension("pairs", label="feature pairs")
    top = float(max(counts.max(), 1.0))
    layers = [hv.Histogram((edges, np.maximum(counts, floor)), kdims=kd, vdims=vd,
                           label=f"{stats_label(stats)}").opts(
        color=CURRENT, alpha=0.6, line_color=None, tools=["hover"], logy=True),
        marker_line(stats.rho_mm, top, f"rho_mm {stats.rho_mm:.4f}", EXPECTED, bottom=floor)]
    if base is not None:
        be, bc = to_numpy(base.hist_edges).astype(float), to_numpy(base.hist_counts).astype(float)
        layers.insert(0, hv.Histogram((be, np.maximum(bc, floor)), kdims=kd, vdims=vd,
                                      label=f"base ({stats_label(base)})").opts(
            fill_alpha=0, line_color=BASE, line_width=2, logy=True))
        layers.append(marker_line(base.rho_mm, top, f"base rho_mm {base.rho_mm:.4f}", BASE,
                                  bottom=floor))
    nz = np.nonzero(counts)[0]
    hi = edges[nz[-1] + 1] if len(nz) else 1.0
    if base is not None:
        bnz = np.nonzero(bc)[0]
        hi = max(hi, be[bnz[-1] + 1] if len(bnz) else 0.0)
    # pairs crowd near 0: show the occupied range, not all of [0, 1]
    return hv.Overlay(layers).opts(logy=True, title="Pairwise |cos| over all feature pairs",
                                   xlim=(0.0, min(1.0, hi * 1.05)), ylim=(floor, top * 3),
                                   legend_position="top_right", **COMMON)


def stats_label(stats) -> str:
    n = len(to_numpy(stats.max_abs_cos))
    return f"{n:,} features, mean |cos| {float(stats.mean_abs_cos):.4f}"


# unoutlined squares: a browser paints N of them in half the time of outlined circles (0.08 s
# against 0.17 s for 16k points), and at 3 px they look the same
_DOTS = dict(marker="square", line_color=None)


def create_max_cos_scatter(stats, probabilities, base=None, base_probabilities=None) -> hv.Overlay:
    """Each feature's largest |cos| with any other feature against its firing probability.

    All N points are drawn, with hover: feature id, closest partner, p95/p99 |cos| (the app
    draws this figure on a 2D canvas, see `synthviz.app.tab_base`).
    probabilities: the per-feature firing probability to put on the x axis (the expected rate).
    """
    if stats is None:
        return empty("superposition not computed yet")
    mx = to_numpy(stats.max_abs_cos).astype(float)
    p = to_numpy(probabilities).astype(float)[: len(mx)]
    data = {"p": p, "max_abs_cos": mx, "feature": np.arange(len(mx)),
            "partner": to_numpy(stats.partner).astype(np.int64)}
    vdims = ["feature", "partner"]
    for q, arr in sorted(getattr(stats, "percentile", {}).items()):
        data[f"p{q}"] = to_numpy(arr).astype(float)
        vdims.append(f"p{q}")
    kd = hv.Dimension("p", label="firing probability")
    vd = hv.Dimension("max_abs_cos", label="max |cos| with any other feature")
    hover = [("feature", "@feature"), ("closest partner", "@partner"),
             ("max |cos|", "@max_abs_cos{0.0000}"), ("p", "@p{0.00000}")] + \
        [(f"p{q} |cos|", f"@p{q}{{0.0000}}") for q in sorted(getattr(stats, "percentile", {}))]
    layers = []
    if base is not None and base_probabilities is not None:
        bm = to_numpy(base.max_abs_cos).astype(float)
        bp = to_numpy(base_probabilities).astype(float)[: len(bm)]
        layers.append(hv.Points((bp, bm), [kd, vd], label=f"base (rho_mm {base.rho_mm:.4f})").opts(
            color=BASE, size=2.5, alpha=0.25, **_DOTS))
    layers.append(hv.Points(data, [kd, vd], vdims,
                            label=f"features (rho_mm {stats.rho_mm:.4f})").opts(
        color=CURRENT, size=3, alpha=0.35, tools=["hover"], hover_tooltips=hover, **_DOTS))
    return hv.Overlay(layers).opts(logx=True, title="Max |cos| against firing probability",
                                   legend_position="top_right", **COMMON)


def create_interference_plot(stats, base=None) -> hv.Overlay:
    """Readout error d_i . (x - bias) - a_i on samples, for active and inactive features
    (densities, log y), titled with the signal-to-interference ratio.

    stats, base: `InterferenceStats` (edges, active_counts, inactive_counts, sir).
    """
    if stats is None:
        return empty("interference not measured")
    edges = to_numpy(stats.edges).astype(float)
    kd = hv.Dimension("error", label="readout error  d_i·(x − b) − a_i")
    vd = hv.Dimension("density")

    def dens(counts, e):
        c = to_numpy(counts).astype(float)
        tot = c.sum()
        d = c / (tot * np.diff(e)) if tot > 0 else c
        return np.where(d > 0, d, np.nan)  # log axis: empty bins are gaps, not -inf

    layers = [
        hv.Histogram((edges, dens(stats.inactive_counts, edges)), kdims=kd, vdims=vd,
                     label="inactive features").opts(color=BASE, alpha=0.5, line_color=None,
                                                     tools=["hover"], logy=True),
        hv.Histogram((edges, dens(stats.active_counts, edges)), kdims=kd, vdims=vd,
                     label="active features").opts(fill_alpha=0, line_color=CURRENT, line_width=2,
                                                   tools=["hover"], logy=True),
    ]
    if base is not None:
        be = to_numpy(base.edges).astype(float)
        layers.append(hv.Histogram((be, dens(base.active_counts, be)), kdims=kd, vdims=vd,
                                   label="base, active").opts(fill_alpha=0, line_color=ACCENT,
                                                              line_width=2, logy=True))
    sir = getattr(stats, "sir", None)
    n = getattr(stats, "samples", None)
    title = f"Interference noise on {int(n):,} samples" if n else "Interference noise on samples"
    if sir is not None:
        title += f": signal-to-interference {float(sir):.1f}"
        if getattr(stats, "sir_db", None) is not None:
            title += f" ({float(stats.sir_db):.1f} dB)"
    if getattr(stats, "active_std", None) is not None:
        title += f", active error std {float(stats.active_std):.3f}"
    # show the occupied bins, down to the rarest one (log axis: no automatic floor)
    ys, xs = [], []
    for counts, e in [(stats.inactive_counts, edges), (stats.active_counts, edges)] + (
            [(base.active_counts, to_numpy(base.edges).astype(float))] if base is not None
            else []):
        d = dens(counts, e)
        ok = np.isfinite(d)
        if ok.any():
            ys.append(d[ok])
            xs += [e[:-1][ok].min(), e[1:][ok].max()]
    opts = {}
    if ys:
        y = np.concatenate(ys)
        opts = dict(ylim=(float(y.min()) * 0.5, float(y.max()) * 2),
                    xlim=(float(min(xs)), float(max(xs))))
    return hv.Overlay(layers).opts(logy=True, title=title, legend_position="top_right",
                                   **opts, **COMMON)
