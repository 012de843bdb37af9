"""Hierarchy: one tree drawn with a tidy layout (nodes coloured by firing rate, ME parents ringed,
organizational nodes labelled as groups, including those above the root) and the forest summary
(nodes per depth)."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import BASE, COMMON, CURRENT, empty, to_numpy

RATE_FLOOR = 1e-5  # colour floor for features never seen in the sample (log scale)


def tidy_layout(nodes: list[int], parents: list[int]) -> dict[int, tuple[float, float]]:
    """(x, y) per node: leaves on consecutive x slots in depth-first order, each parent centred
    over its children, y = -depth. `parents[i]` is node i's parent (-1 or absent for the root).

    A tidy layout written here: the usual libraries need graphviz for trees.
    """
    kids: dict[int, list[int]] = {n: [] for n in nodes}
    roots = []
    for n, p in zip(nodes, parents):
        if p in kids and p != n:
            kids[p].append(n)
        else:
            roots.append(n)
    pos: dict[int, tuple[float, float]] = {}
    slot = 0.0
    for root in roots:
        # iterative post-order so a deep tree cannot hit Python's recursion limit
        stack = [(root, 0, False)]
        while stack:
            node, depth, done = stack.pop()
            if done:
                ch = kids[node]
                x = (pos[ch[0]][0] + pos[ch[-1]][0]) / 2 if ch else slot
                if not ch:
                    slot += 1.0
                pos[node] = (x, -float(depth))
                continue
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in reversed(kids[node]))
        slot += 1.0  # a gap between separate trees
    return pos


def _columns(table) -> dict[str, np.ndarray]:
    """A tree table as numpy columns; accepts a dict of columns, a list of rows, or a DataFrame."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):
        table = {c: table[c].to_numpy() for c in table.columns}
    elif isinstance(table, list):
        keys = table[0].keys() if table else []
        table = {k: [row[k] for row in table] for k in keys}
    return {k: to_numpy(v) for k, v in table.items()}


def _group_kind(me: bool) -> str:
    return "ME group" if me else "group"


def _place_above(above: list[dict], root_x: float, lo: float, hi: float) -> dict[str, list]:
    """Rows for the organizational nodes above the root (`groups_above`, outermost first):
    each group centred over its children, one level up; its other feature children beside
    the path down (left or right of everything drawn so far, as in the file's order)."""
    rows: dict[str, list] = {k: [] for k in ("id", "x", "y", "rate", "me", "label", "kind")}
    edges: list[tuple[int, int]] = []
    below_id, below_x = None, root_x  # the node the next group up points to (None: the root)
    m = len(above)
    for k in range(m - 1, -1, -1):  # innermost first
        g = above[k]
        level = float(m - 1 - k)  # y of this group's children; the root's row is 0
        gid = -(10 ** 9) - k  # clear of the table's organizational ids (-2, -3, ...)
        xs = [below_x]
        left = [(f, r) for f, r, j in zip(g["features"], g["rates"], g["positions"])
                if j < g["child"]]
        right = [(f, r) for f, r, j in zip(g["features"], g["rates"], g["positions"])
                 if j > g["child"]]
        placed = [(f, r, lo - len(left) + i) for i, (f, r) in enumerate(left)]
        placed += [(f, r, hi + 1 + i) for i, (f, r) in enumerate(right)]
        lo, hi = lo - len(left), hi + len(right)
        for f, r, x in placed:
            rows["id"].append(f)
            rows["x"].append(float(x))
            rows["y"].append(level)
            rows["rate"].append(r)
            rows["me"].append(False)
            rows["label"].append("")
            rows["kind"].append("feature")
            edges.append((gid, f))
            xs.append(float(x))
        gx = (min(xs) + max(xs)) / 2
        rows["id"].append(gid)
        rows["x"].append(gx)
        rows["y"].append(level + 1)
        rows["rate"].append(np.nan)
        rows["me"].append(bool(g["me"]))
        rows["label"].append("" if g["label"] is None else str(g["label"]))
        rows["kind"].append(_group_kind(bool(g["me"])))
        edges.append((gid, below_id))
        below_id, below_x = gid, gx
    rows["edges"] = edges
    return rows


def create_tree_plot(table, title: str | None = None, color: str | None = None,
                     above: list[dict] | None = None) -> hv.Overlay:
    """One tree from `tree_table(forest, root, rates)`: columns feature, parent, depth, me, rate
    (and label, with organizational nodes as rows of negative id).

    Node colour is log10 of the measured rate; ME parents get a black ring; hover shows the
    feature id, depth, rate and whether its children are mutually exclusive. Organizational
    nodes are drawn as nodes labelled "ME group" or "group"; `above` (from
    `synthviz.hierarchy.groups_above`) adds those above the root, with their other features.
    """
    cols = _columns(table)
    if not cols or len(cols.get("feature", [])) == 0:
        return empty("no tree for this root")
    feats = [int(f) for f in cols["feature"]]
    parents = [int(p) for p in cols["parent"]]
    pos = tidy_layout(feats, parents)
    n = len(feats)
    rate = cols["rate"].astype(float) if "rate" in cols else np.full(n, np.nan)
    me = cols["me"].astype(bool) if "me" in cols else np.zeros(n, bool)
    depth = cols["depth"].astype(int)
    x = np.array([pos[f][0] for f in feats])
    y = np.array([pos[f][1] for f in feats])
    label = (np.array(["" if v is None else str(v) for v in cols["label"]]) if "label" in cols
             else np.full(n, "", dtype=object))
    kind = np.array([_group_kind(m) if f < 0 else "feature" for f, m in zip(feats, me)])
    src = [p for p in parents if p in pos]
    dst = [f for f, p in zip(feats, parents) if p in pos]
    ids = np.array(feats)
    if above:
        up = _place_above(above, float(x[0]), float(x.min()), float(x.max()))
        k = len(up["id"])
        ids = np.concatenate([ids, up["id"]])
        x = np.concatenate([x, up["x"]])
        y = np.concatenate([y, up["y"]])
        rate = np.concatenate([rate, np.array(up["rate"], float)])
        me = np.concatenate([me, np.array(up["me"], bool)])
        # rows above the root: depth falls by one per level up
        depth = np.concatenate([depth, int(depth[0]) - np.array(up["y"], int)])
        label = np.concatenate([label.astype(object), np.array(up["label"], dtype=object)])
        kind = np.concatenate([kind, np.array(up["kind"])])
        for a, b in up["edges"]:
            src.append(a)
            dst.append(feats[0] if b is None else b)
        n += k
    log_rate = np.log10(np.clip(np.nan_to_num(rate, nan=RATE_FLOOR), RATE_FLOOR, None))
    org = kind != "feature"
    log_rate[org] = np.nan  # a group has no rate: drawn in the colour map's NaN grey
    node_data = {"x": x, "y": y, "feature": ids, "rate": rate, "log10_rate": log_rate,
                 "depth": depth, "me": np.where(me, "yes", "no"), "node": kind,
                 "label": label.astype(str)}
    vdims = ["rate", "log10_rate", "depth", "me", "node", "label"]
    tips = [("feature", "@feature"), ("node", "@node"), ("depth", "@depth"),
            ("rate", "@rate{0.00000}"), ("ME children", "@me"), ("id", "@label")]
    nodes = hv.Nodes(node_data, ["x", "y", "feature"], vdims)
    # the tree's own rate range: a fixed 1e-5..1 scale would paint every node the same colour
    lo, hi = float(np.nanmin(log_rate)), float(np.nanmax(log_rate))
    if hi - lo < 0.5:
        lo, hi = lo - 0.25, hi + 0.25
    graph = hv.Graph(((src, dst), nodes)).opts(
        node_color="log10_rate", cmap="viridis", node_size=9 if n < 400 else 5,
        edge_color=color or "#999999", edge_line_width=1, colorbar=True,
        clim=(lo, hi), tools=["hover"], node_line_color=None,
        hover_tooltips=tips,
        xaxis=None, yaxis=None)
    rings = hv.Points({"x": x[me], "y": y[me]}, ["x", "y"], label="ME parent").opts(
        marker="circle", fill_alpha=0, line_color="black", line_width=2,
        size=16 if n < 400 else 9)
    text = [k if not lab else f"{k}: {lab}" for k, lab in zip(kind[org], label[org])]
    groups = hv.Labels({"x": x[org], "y": y[org], "text": text}, ["x", "y"], "text").opts(
        text_font_size="9pt", yoffset=0.3, text_color="black")
    root = feats[0]
    in_group = " (in an ME group)" if above and any(g["me"] for g in above) else ""
    return (graph * rings * groups).opts(
        title=title or (f"Tree of root {root}{in_group}: {len(feats)} nodes, depth "
                        f"{int(cols['depth'].astype(int).max())}"),
        legend_position="top_right", ylim=(float(y.min()) - 0.4, float(y.max()) + 0.7),
        **COMMON)


def create_forest_summary_plot(summary, base=None) -> hv.Overlay:
    """Bars of tree nodes per depth, titled with roots, ME parents and features outside trees.

    summary, base: results of `forest_summary` (fields nodes_per_depth, roots, me_parents,
    outside, max_depth).
    """
    if summary is None:
        return empty("this model has no hierarchy")
    per = [int(v) for v in to_numpy(summary.nodes_per_depth)]
    kd = hv.Dimension("depth")
    vd = hv.Dimension("nodes", label="tree nodes")
    bars = hv.Bars({"depth": [str(d) for d in range(len(per))], "nodes": per}, kd, vd,
                   label="this model").opts(color=CURRENT, tools=["hover"])
    layers = [bars]
    if base is not None:
        bper = [int(v) for v in to_numpy(base.nodes_per_depth)]
        layers.append(hv.Scatter({"depth": [str(d) for d in range(len(bper))], "nodes": bper},
                                 kd, vd, label="base").opts(color=BASE, size=12, marker="diamond"))
    title = (f"{summary.roots} roots, {summary.me_parents} ME parents, max depth "
             f"{summary.max_depth}, {summary.outside} features outside trees")
    return hv.Overlay(layers).opts(title=title, logy=False, legend_position="top_left", **COMMON)
