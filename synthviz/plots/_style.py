"""Shared look for every plot: colours, sizes, and the Bokeh backend that `.opts` needs."""

from __future__ import annotations

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the Bokeh backend so `.opts` works anywhere)
import numpy as np

CURRENT = "#1f77b4"
FIRST_K = "#ff7f0e"
BASE = "#7f7f7f"
EXPECTED = "#d62728"
ACCENT = "#2ca02c"

HEIGHT = 360
# responsive width fills a Panel tab; min_width keeps notebooks readable
COMMON = dict(responsive=True, height=HEIGHT, min_width=320, toolbar="above", fontscale=1.0)


def to_numpy(x) -> np.ndarray:
    """Tensors, lists and arrays alike as a CPU numpy array."""
    if x is None:
        return np.zeros(0)
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "numpy"):
            return x.numpy()
    return np.asarray(x)


def step_edges(values: np.ndarray) -> np.ndarray:
    """Unit-wide bin edges centred on integer values 0..len-1 (L0 counts)."""
    return np.arange(len(values) + 1, dtype=float) - 0.5


def trim_counts(counts: np.ndarray, keep: float = 0.9995) -> int:
    """Length that keeps `keep` of the mass, so a long empty tail does not squash the plot."""
    total = counts.sum()
    if total <= 0:
        return max(len(counts), 1)
    cum = np.cumsum(counts) / total
    return int(min(len(counts), np.searchsorted(cum, keep) + 2))


def marker_line(x: float, top: float, label: str, color: str, dash: str = "dashed",
                bottom: float = 0.0) -> hv.Curve:
    """A vertical segment at x that, unlike hv.VLine, gets a legend entry (on a log axis give a
    positive `bottom`: a segment from 0 is not drawn there)."""
    x = float(x)
    return hv.Curve(([x, x], [float(bottom), float(top)]), "x", "y", label=label).opts(
        color=color, line_dash=dash, line_width=2)


def empty(message: str) -> hv.Text:
    """A placeholder element with a message when a statistic is not available."""
    return hv.Text(0.5, 0.5, message).opts(xaxis=None, yaxis=None, toolbar=None,
                                           responsive=True, height=HEIGHT, min_width=320)
