"""One hierarchy tree coloured by SAE recovery (the best latent's F1, recall or precision per
feature), with each parent->child edge coloured by its absorption gap (SAELens #729:
P(parent latent | parent on, child off) - P(parent latent | parent on, child on))."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import COMMON, empty
from synthviz.plots.hierarchy import tidy_layout

METRIC_NAMES = {"f1": "F1"}


def create_sae_tree_plot(table: dict | None, title: str | None = None, metric: str = "f1"):
    """table: `synthviz.sae.view_stats.sae_tree_table(...)` (one tree, depth first), its score
    column holding `metric`."""
    if not table or len(table.get("feature", ())) == 0:
        return empty("no tree (this model has no hierarchy, or no SAE evaluation yet)")
    feats = [int(f) for f in table["feature"]]
    parents = [int(p) for p in table["parent"]]
    pos = tidy_layout(feats, parents)
    x = np.array([pos[f][0] for f in feats])
    y = np.array([pos[f][1] for f in feats])
    gap = np.asarray(table["gap"], dtype=float)
    segs = []
    for f, p, g in zip(feats, parents, gap):
        if p in pos:
            segs.append({"x0": pos[p][0], "y0": pos[p][1], "x1": pos[f][0], "y1": pos[f][1],
                         "gap": 0.0 if np.isnan(g) else g, "child": f, "parent": p})
    edge_el = hv.Segments(segs, ["x0", "y0", "x1", "y1"], ["gap", "child", "parent"]).opts(
        color="gap", cmap="coolwarm", clim=(-1, 1), line_width=3, tools=["hover"],
        colorbar=False)
    nodes = hv.Points({"x": x, "y": y, "feature": np.array(feats), "score": table["score"],
                       "rate": table["rate"], "depth": table["depth"]}, ["x", "y"],
                      ["feature", "score", "rate", "depth"]).opts(
        color="score", cmap="viridis", clim=(0, 1), size=10 if len(feats) < 400 else 5,
        colorbar=True, tools=["hover"], line_color="black")
    worst = np.nanmax(gap) if np.isfinite(gap).any() else float("nan")
    return (edge_el * nodes).opts(
        title=title or f"Tree of root {feats[0]}: node colour = best-latent "
                       f"{METRIC_NAMES.get(metric, metric)}, edge colour = absorption gap "
                       f"(max {worst:.2f})",
        xaxis=None, yaxis=None, **COMMON)

