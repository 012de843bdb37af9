"""Co-occurrence heatmap for a feature set: colour is log2 lift, hover gives ids, counts, lift, phi."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import COMMON, HEIGHT, empty, to_numpy

MEASURES = ("lift", "phi", "npmi")
LIFT_CLIP = 4.0  # colour range of log2 lift: 1/16 .. 16


def _colour_values(stats, measure: str) -> tuple[np.ndarray, str, tuple[float, float]]:
    if measure == "lift":
        lift = to_numpy(stats.lift).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.log2(lift)
        # never co-firing (ME siblings) is -inf: show it at the bottom of the scale, not blank
        v = np.where(np.isneginf(v), -LIFT_CLIP, v)
        return np.clip(v, -LIFT_CLIP, LIFT_CLIP), "log2 lift", (-LIFT_CLIP, LIFT_CLIP)
    v = to_numpy(getattr(stats, measure)).astype(float)
    return v, measure, (-1.0, 1.0)


def create_cooccurrence_plot(stats, measure: str = "lift", title: str | None = None,
                             me_pairs=None) -> hv.HeatMap:
    """K x K heatmap of `measure` (lift as log2, phi or NPMI) for `CooccurrenceStats`.

    The diagonal (a feature with itself) is left blank (light grey), as are pairs flagged as
    noise (too few expected joint counts to trust the estimate). me_pairs ([K, K] bool, optional):
    mutually exclusive siblings; those never seen together are drawn at the bottom of the scale
    even when rare, since their zero is structural, not noise.
    """
    if stats is None or stats.samples == 0:
        return empty("no samples yet")
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    feats = [int(f) for f in to_numpy(stats.features)]
    k = len(feats)
    if k == 0:
        return empty("no features selected")
    colour, clabel, clim = _colour_values(stats, measure)
    counts = to_numpy(stats.counts).astype(np.int64)
    lift = to_numpy(stats.lift).astype(float)
    phi = to_numpy(stats.phi).astype(float)
    rates = to_numpy(stats.rates).astype(float)
    noise = getattr(stats, "noise", None)
    noise = np.zeros((k, k), bool) if noise is None else to_numpy(noise).astype(bool)
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    off = ii != jj
    me = np.zeros((k, k), bool) if me_pairs is None else np.asarray(me_pairs, bool)
    me_zero = me[ii, jj] & (counts[ii, jj] == 0)
    value = np.where(off & ~noise[ii, jj], colour[ii, jj], np.nan)
    value = np.where(off & me_zero, clim[0], value)
    labels = np.array([str(f) for f in feats])
    data = {
        "feature_i": labels[ii], "feature_j": labels[jj], "value": value,
        "count": counts[ii, jj], "lift": lift[ii, jj], "phi": phi[ii, jj],
        "rate_i": rates[ii], "rate_j": rates[jj], "noise": noise[ii, jj],
        "me": me[ii, jj],
    }
    kdims = [hv.Dimension("feature_i", label="feature i"), hv.Dimension("feature_j", label="feature j")]
    hm = hv.HeatMap(data, kdims, [hv.Dimension("value", label=clabel), "count", "lift", "phi",
                                 "rate_i", "rate_j", "noise", "me"])
    hover = [("features", "@feature_i, @feature_j"), ("joint count", "@count"),
             ("lift", "@lift{0.000}"), ("phi", "@phi{0.000}"),
             ("rates", "@rate_i{0.0000}, @rate_j{0.0000}"), ("ME siblings", "@me"),
             ("too few expected", "@noise")]
    size = max(HEIGHT, min(720, 14 * k + 120))
    return hm.opts(
        cmap="RdBu_r", clim=clim, colorbar=True, tools=["hover"], hover_tooltips=hover,
        xrotation=90, invert_yaxis=True, clipping_colors={"NaN": "#f0f0f0"},
        title=title or f"Co-occurrence of {k} features ({clabel}, {stats.samples:,} samples)",
        **{**COMMON, "height": size, "responsive": True},
        fontsize={"xticks": 7 if k > 40 else 9, "yticks": 7 if k > 40 else 9})
