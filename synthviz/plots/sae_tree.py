"""One hierarchy tree coloured by SAE recovery (the best latent's F1 per feature), with each
parent->child edge coloured by its absorption gap (SAELens #729: P(parent latent | parent on,
child off) - P(parent latent | parent on, child on))."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import COMMON, empty, to_numpy
from synthviz.plots.hierarchy import tidy_layout


def sae_tree_table(forest, root: int, features: dict, edges: dict, metric: str = "f1") -> dict:
    """Columns feature, parent, depth, score (the metric) and gap (of the edge into the node)."""
    nodes, parents = [], []
    stack = [(int(root), -1)]
    while stack:
        node, par = stack.pop()
        nodes.append(node)
        parents.append(par)
        stack.extend((int(c), node) for c in reversed(forest.children.get(node, [])))
    gap_of = {}
    if edges:
        for c, g in zip(to_numpy(edges["child"]), to_numpy(edges["gap"])):
            gap_of[int(c)] = float(g)
    score = to_numpy(features[metric])
    depth = to_numpy(features["depth"])
    return {"feature": np.array(nodes), "parent": np.array(parents),
            "depth": depth[nodes], "score": score[nodes],
            "gap": np.array([gap_of.get(n, np.nan) for n in nodes]),
            "rate": to_numpy(features["rate"])[nodes]}


def create_sae_tree_plot(table: dict | None, title: str | None = None):
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
        title=title or f"Tree of root {feats[0]}: node colour = best-latent F1, edge colour = "
                       f"absorption gap (max {worst:.2f})",
        xaxis=None, yaxis=None, **COMMON)


def most_absorbed_root(forest, edges: dict) -> int | None:
    """The root whose tree holds the largest absorption gap (a useful first tree to show)."""
    if forest is None or not edges or len(edges.get("gap", ())) == 0:
        return None if forest is None or not forest.roots else int(forest.roots[0])
    gap = np.nan_to_num(to_numpy(edges["gap"]), nan=-np.inf)
    node = int(to_numpy(edges["parent"])[int(np.argmax(gap))])
    par = to_numpy(forest.parent)
    while par[node] >= 0:
        node = int(par[node])
    return node
