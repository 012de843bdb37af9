"""Magnitude distribution: active activation values overall and by hierarchy depth, and the same
relative to each feature's mean magnitude (where child rescaling shows as extra spread)."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import BASE, COMMON, CURRENT, empty, to_numpy

DEPTH_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e")


def _density(counts, edges) -> np.ndarray:
    c = to_numpy(counts).astype(float)
    w = np.diff(to_numpy(edges).astype(float))
    total = c.sum()
    return c / (total * w) if total > 0 else c


def _upper(counts, edges, keep: float = 0.9995) -> float:
    """The value below which `keep` of the mass lies, so a far tail does not squash the plot."""
    c = to_numpy(counts).astype(float)
    e = to_numpy(edges).astype(float)
    if c.sum() <= 0:
        return float(e[-1])
    i = int(np.searchsorted(np.cumsum(c) / c.sum(), keep))
    return float(e[min(i + 1, len(e) - 1)])


def _depth_name(depth, means: dict | None) -> str:
    name = "outside trees" if depth is None or depth < 0 else f"depth {depth}"
    if means and depth in means and means[depth] == means[depth]:
        name += f" (mean {means[depth]:.2f})"
    return name


def _panel(edges, counts, by_depth, means, base_edges, base_counts, kd, title, overall_mean):
    vd = hv.Dimension("density")
    label = "all active features" + (f" (mean {overall_mean:.2f})" if overall_mean else "")
    layers = [hv.Histogram((edges, _density(counts, edges)), kdims=kd, vdims=vd, label=label).opts(
        color=CURRENT, alpha=0.4, line_color=None, tools=["hover"])]
    centres = (edges[:-1] + edges[1:]) / 2
    for i, (depth, c) in enumerate(sorted(by_depth.items(), key=lambda kv: kv[0])):
        if float(to_numpy(c).sum()) == 0:
            continue
        layers.append(hv.Curve((centres, _density(c, edges)), kd, vd,
                               label=_depth_name(depth, means)).opts(
            color=DEPTH_COLORS[i % len(DEPTH_COLORS)], line_width=2, tools=["hover"]))
    hi = _upper(counts, edges)
    if base_counts is not None and float(to_numpy(base_counts).sum()) > 0:
        layers.insert(0, hv.Histogram((base_edges, _density(base_counts, base_edges)), kdims=kd,
                                      vdims=vd, label="base, all active").opts(
            fill_alpha=0, line_color=BASE, line_width=2))
        hi = max(hi, _upper(base_counts, base_edges))
    return hv.Overlay(layers).opts(title=title, legend_position="top_right",
                                   xlim=(float(edges[0]), hi * 1.05), **COMMON)


def create_magnitude_plot(stats, base=None) -> hv.Layout | hv.Overlay | hv.Text:
    """Density of active activation values (all features filled, each hierarchy depth a line),
    and below it the same for value / mu_i, where child rescaling widens deeper levels.

    stats, base: `MagnitudeStats` (edges, counts, by_depth, rel_edges, rel_counts, rel_by_depth).
    """
    panels = create_magnitude_panels(stats, base)
    if len(panels) == 1:
        return panels[0]
    return (panels[0] + panels[1]).cols(1).opts(shared_axes=False)


def create_magnitude_panels(stats, base=None) -> list:
    """The two panels of `create_magnitude_plot` as separate elements (the relative one only
    when measured), for pages that update each plot in place."""
    first = create_magnitude_panel(stats, base)
    rel = create_magnitude_panel(stats, base, relative=True)
    return [first] if rel is None else [first, rel]


def create_magnitude_panel(stats, base=None, relative: bool = False):
    """One panel of `create_magnitude_panels`: the absolute values, or (`relative=True`) the
    values relative to each feature's mean, None when not measured."""
    if stats is None or float(to_numpy(stats.counts).sum()) == 0:
        return None if relative else empty("no active features sampled")
    if not relative:
        edges = to_numpy(stats.edges).astype(float)
        kd = hv.Dimension("magnitude", label="activation of an active feature")
        return _panel(edges, stats.counts, getattr(stats, "by_depth", {}),
                      getattr(stats, "mean_by_depth", None),
                      None if base is None else to_numpy(base.edges).astype(float),
                      None if base is None else base.counts, kd,
                      f"Magnitudes of active features ({int(getattr(stats, 'active', 0)):,} "
                      "values)", getattr(stats, "mean", None))
    rel_counts = getattr(stats, "rel_counts", None)
    if rel_counts is None or float(to_numpy(rel_counts).sum()) == 0:
        return None
    redges = to_numpy(stats.rel_edges).astype(float)
    rkd = hv.Dimension("relative", label="activation / the feature's mean magnitude")
    return _panel(redges, rel_counts, getattr(stats, "rel_by_depth", {}), None,
                  None if base is None else to_numpy(base.rel_edges).astype(float),
                  None if base is None else base.rel_counts, rkd,
                  "Relative to each feature's mean (child rescaling widens deeper levels)", None)
