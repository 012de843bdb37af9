"""L0 histogram: active features per sample, the first-K overlay, and mean / expected markers."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import (BASE, COMMON, CURRENT, EXPECTED, FIRST_K, empty, marker_line,
                                   step_edges, to_numpy, trim_counts)


def _fractions(hist) -> np.ndarray:
    h = to_numpy(hist).astype(float)
    total = h.sum()
    return h / total if total > 0 else h


def create_l0_plot(stats, expected: tuple[float, float] | None = None, first_k: int = 4096,
                   base=None) -> hv.Overlay:
    """Histogram of L0 (fraction of samples) with the first-K L0 overlaid.

    stats, base: `L0Stats` (hist and hist_first_k are counts per L0 value). expected: the analytic
    (L0, first-K L0) pair, drawn as dotted markers. base: drawn as grey outlines for comparison.
    """
    if stats is None or stats.samples == 0:
        return empty("no samples yet")
    full, first = _fractions(stats.hist), _fractions(stats.hist_first_k)
    n = max(len(full), len(first), len(to_numpy(base.hist)) if base is not None else 0)
    # every bin is kept (the fractions sum to 1); the view stops where 99.95% of the mass ends
    shown = max(trim_counts(to_numpy(stats.hist)), trim_counts(to_numpy(stats.hist_first_k)))
    if base is not None:
        shown = max(shown, trim_counts(to_numpy(base.hist)))
    full = np.pad(full, (0, n - len(full)))
    first = np.pad(first, (0, n - len(first)))
    edges = step_edges(full)
    kd, vd = hv.Dimension("L0", label="active features per sample (L0)"), \
        hv.Dimension("fraction", label="fraction of samples")
    top = float(max(full.max(), first.max(), 1e-9)) * 1.08
    layers = [
        hv.Histogram((edges, full), kdims=kd, vdims=vd, label=f"all features (mean {stats.mean:.1f})").opts(
            color=CURRENT, alpha=0.55, line_color=None, tools=["hover"]),
        hv.Histogram((edges, first), kdims=kd, vdims=vd,
                     label=f"first {first_k} (mean {stats.mean_first_k:.1f})").opts(
            color=FIRST_K, alpha=0.45, line_color=None, tools=["hover"]),
        marker_line(stats.mean, top, f"mean L0 {stats.mean:.2f}", CURRENT),
        marker_line(stats.mean_first_k, top, f"mean first-{first_k} {stats.mean_first_k:.2f}",
                    FIRST_K),
    ]
    if expected is not None:
        layers += [marker_line(expected[0], top, f"expected L0 {expected[0]:.2f}", EXPECTED, "dotted"),
                   marker_line(expected[1], top, f"expected first-{first_k} {expected[1]:.2f}",
                               EXPECTED, "dotdash")]
    if base is not None and base.samples:
        b = _fractions(base.hist)
        b = np.pad(b, (0, n - len(b)))
        layers.insert(0, hv.Histogram((edges, b), kdims=kd, vdims=vd, label=f"base (mean {base.mean:.1f})").opts(
            fill_alpha=0, line_color=BASE, line_width=2))
        layers.append(marker_line(base.mean, top, f"base mean {base.mean:.2f}", BASE, "dashed"))
    return hv.Overlay(layers).opts(
        title=f"L0 per sample ({stats.samples:,} samples)", legend_position="top_right",
        xlim=(-0.5, shown - 0.5), show_legend=True, **COMMON)
