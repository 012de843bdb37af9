"""SAE recovery against firing rate: each ground-truth feature at (firing rate, F1 or recall of its
best latent), coloured by hierarchy depth; above `RASTER_ABOVE` features, a 2-D count image
instead of points (rasterized here with numpy: datashader is not a dependency)."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import BASE, COMMON, empty, to_numpy

RASTER_ABOVE = 5000
RATE_FLOOR = 1e-6
METRICS = ("f1", "recall", "precision", "f1_enc", "recall_enc", "precision_enc")


def _xy(features: dict, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rate = to_numpy(features["rate"]).astype(float)
    seen = rate > 0  # never-seen features have no recall to show
    x = np.log10(np.clip(rate[seen], RATE_FLOOR, None))
    return x, to_numpy(features[metric]).astype(float)[seen], to_numpy(features["depth"])[seen]


def create_recovery_plot(features: dict | None, metric: str = "f1", base: dict | None = None,
                         raster_above: int = RASTER_ABOVE, bins: int = 60):
    """features, base: `SAEEvalResult.features` (columns rate, depth and the metric)."""
    if not features or len(features.get("rate", ())) == 0:
        return empty("no SAE evaluation yet")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x, y, depth = _xy(features, metric)
    if len(x) == 0:
        return empty("no feature fired in the sample")
    label = metric.replace("_enc", " (encoder match)")
    title = f"Best-latent {label} per feature against firing rate ({len(x)} features seen)"
    if len(x) > raster_above:
        xr = (float(x.min()) - 0.05, float(x.max()) + 0.05)
        counts, xe, ye = np.histogram2d(x, y, bins=(bins, 40), range=(xr, (-0.0125, 1.0125)))
        img = hv.Image((0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]),
                        np.log10(counts.T + 1)), ["log10_rate", metric], "log10(features + 1)")
        el = img.opts(cmap="viridis", colorbar=True, tools=["hover"])
    else:
        el = hv.Points({"log10_rate": x, metric: y, "depth": depth}, ["log10_rate", metric],
                       ["depth"], label="this model").opts(
            color="depth", cmap="Category10", size=4, alpha=0.6, tools=["hover"], colorbar=True)
    layers = [el]
    if base is not None and len(base.get("rate", ())):
        bx, by, _ = _xy(base, metric)
        # the base as binned means: a second cloud would hide the first
        edges = np.linspace(min(bx.min(), x.min()), max(bx.max(), x.max()) + 1e-9, 25)
        idx = np.digitize(bx, edges)
        mx = [bx[idx == i].mean() for i in np.unique(idx)]
        my = [by[idx == i].mean() for i in np.unique(idx)]
        layers.append(hv.Curve((mx, my), "log10_rate", metric, label="base (binned mean)").opts(
            color=BASE, line_width=3))
    return hv.Overlay(layers).opts(title=title, xlabel="log10 firing rate", ylabel=label,
                                   ylim=(-0.02, 1.02), legend_position="bottom_right", **COMMON)
